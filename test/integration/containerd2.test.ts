// containerd 2.x's handshake, played by the test: `start` with MAX_SHIM_VERSION=3 prints JSON
// bootstrap params, and the daemon serves the task API under containerd.task.v3.Task (the name
// 2.x calls for version 3) as well as v2, with the same messages and events. containerd 1.6
// (no MAX_SHIM_VERSION) and 1.7 (MAX_SHIM_VERSION=2) keep getting the bare address.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { Code, TtrpcClient, typedCall } from '../../shim/framework/ttrpc';
import { DIRECT_NS, DirectShims, STATUS, TASK, expectStatus, waitGone } from './harness';

const V3 = 'containerd.task.v3.Task';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

t.test('containerd 2.x: JSON bootstrap params, the whole lifecycle over containerd.task.v3.Task', async (t) => {
  const events = shims.events('v3');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'v3';
  const bundle = shims.bundle(id, ['sh', '-c', 'echo v3; exit 4']);
  const r = await shims.start(bundle, id, events.socket, undefined, { MAX_SHIM_VERSION: '3', GRPC_ADDRESS: '/nonexistent.sock', NAMESPACE: DIRECT_NS });
  t.equal(r.code, 0, `start exits 0 (${r.stderr})`);
  let params: { version?: number; address?: string; protocol?: string } = {};
  t.doesNotThrow(() => { params = JSON.parse(r.stdout); }, 'start prints JSON', { stdout: r.stdout });
  t.equal(params.version, 3, 'version 3');
  t.equal(params.protocol, 'ttrpc', 'protocol ttrpc');
  t.match(params.address ?? '', /^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/, 'the shim address');
  t.equal(fs.readFileSync(path.join(bundle, 'address'), 'utf8'), params.address, 'the address file still holds the bare address (1.x reads it)');
  shims.addresses.add(params.address ?? '');

  const client = await TtrpcClient.connect((params.address ?? '').replace('unix://', ''));
  t.teardown(() => client.close());
  const call = (method: string, req: object) => typedCall(client, TASK, method, req, {
    name: V3, timeoutMs: 30_000, metadata: { 'containerd-namespace-ttrpc': DIRECT_NS },
  });
  const conn = await call('Connect', { id });
  t.ok(conn.shim_pid > 0, 'v3 Connect answers with the shim pid');
  const created = await call('Create', shims.createReq(id, bundle));
  t.ok(created.pid > 0, 'v3 Create');
  t.equal((await call('State', { id, exec_id: '' })).status, STATUS.CREATED, 'v3 State: CREATED');
  const waiting = call('Wait', { id, exec_id: '' });
  t.equal((await call('Start', { id, exec_id: '' })).pid, created.pid, 'v3 Start');
  t.equal((await waiting).exit_status, 4, 'v3 Wait: exit status 4');
  t.match(fs.readFileSync(path.join(bundle, 'out.log'), 'utf8'), 'v3', 'the output reached stdout');
  const deleted = await call('Delete', { id, exec_id: '' });
  t.same([deleted.pid, deleted.exit_status], [created.pid, 4], 'v3 Delete');
  await expectStatus(t, call('State', { id, exec_id: '' }), Code.NotFound, 'v3 State after Delete');
  // Events is v3's optional event stream: a shim without the feature does not announce it, and
  // answers it Unimplemented.
  await expectStatus(t, client.call(V3, 'Events', Buffer.alloc(0), { metadata: { 'containerd-namespace-ttrpc': DIRECT_NS } }), Code.Unimplemented, 'v3 Events (not offered)');

  t.ok(await events.waitFor(() => events.for(id).length >= 4), 'events to TTRPC_ADDRESS as for v2');
  t.same(events.for(id).map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], 'create, start, exit, delete');

  await call('Shutdown', { id, now: false });
  t.ok(await waitGone(conn.shim_pid), 'v3 Shutdown: the shim exits');
});

t.test('containerd 1.6 and 1.7: the bare address, and v2 and v3 both served by one daemon', async (t) => {
  const events = shims.events('v2');
  await events.listen();
  t.teardown(() => events.close());
  for (const [label, env] of [['1.6 (no MAX_SHIM_VERSION)', {}], ['1.7 (MAX_SHIM_VERSION=2)', { MAX_SHIM_VERSION: '2' }]] as const) {
    const id = `old-${Object.keys(env).length}`;
    const bundle = shims.bundle(id, ['true']);
    const r = await shims.start(bundle, id, events.socket, undefined, env);
    t.equal(r.code, 0, `${label}: start exits 0`);
    t.match(r.stdout, /^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/, `${label}: the bare address, nothing else`);
    const client = await TtrpcClient.connect(r.stdout.replace('unix://', ''));
    const md = { metadata: { 'containerd-namespace-ttrpc': DIRECT_NS }, timeoutMs: 10_000 };
    const v2 = await typedCall(client, TASK, 'Connect', { id }, md);
    const v3 = await typedCall(client, TASK, 'Connect', { id }, { ...md, name: V3 });
    t.equal(v3.shim_pid, v2.shim_pid, `${label}: the same daemon answers under both names`);
    await typedCall(client, TASK, 'Shutdown', { id, now: false }, md);
    client.close();
    t.ok(await waitGone(v2.shim_pid), `${label}: shim exits`);
  }
});

t.test('nothing is left behind', async (t) => {
  await shims.assertNothingLeft(t, 3);
});
