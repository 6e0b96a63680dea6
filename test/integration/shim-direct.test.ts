// The shim driven directly the way containerd drives it: `start` with TTRPC_ADDRESS and stdin,
// the Task API over ttrpc, events received by a fake containerd Events service, `delete` after a
// crash. Real runc/crun and real containers; no containerd in the loop, so the test can see the
// exact wire behaviour (status codes, event order, runtime options such as BinaryName).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { messageType } from '../../shim/framework/proto';
import { Code, TtrpcError } from '../../shim/framework/ttrpc';
import {
  DIRECT_NS as NS, DirectShims, SHIM, STATUS, connectShim as connect, execSpec, expectStatus as expectCode,
  procStatus, alive, waitGone, runcOptions, run as runAny, runShimBinary, repoRoot, type DirectShim,
} from './harness';

/** run(), for the shim through runShimBinary (tap's NODE_OPTIONS kept: the compiled modules run). */
function run(file: string, args: string[], opts: Parameters<typeof runAny>[2] = {}) {
  return file === SHIM ? runShimBinary(args, opts) : runAny(file, args, opts);
}

let shims: DirectShims;
let tmpRoot: string;
t.before(async () => {
  shims = await DirectShims.create(t);
  tmpRoot = shims.root;
});

/** A runtime binary of our own that records each invocation and hands over to runc: proves BinaryName is what runs. */
function wrapperRuntime(): string {
  const file = path.join(tmpRoot, 'runc-recording');
  fs.writeFileSync(file, `#!/bin/sh\necho "$* ca=\${NODE_EXTRA_CA_CERTS-unset} status=\${RUNCTS_START_STATUS_FD-unset}" >> ${tmpRoot}/runc-recording.calls\nexec runc "$@"\n`, { mode: 0o755 });
  return file;
}

for (const binary of ['runc', 'wrapper']) {
  t.test(`full lifecycle with BinaryName=${binary}, custom Root, rootfs mount, events in order`, async (t) => {
    const events = shims.events(binary);
    await events.listen();
    t.teardown(() => events.close());
    const id = `life-${binary}`;
    const bundle = shims.bundle(id, ['sh', '-c', 'echo hello from $0; echo to-stderr >&2; exit 3', binary]);
    const runcRoot = path.join(tmpRoot, `root-${binary}`);
    const binaryName = binary === 'wrapper' ? wrapperRuntime() : binary;
    const optsAny = { type_url: 'containerd.runc.v1.Options', value: runcOptions({ binary_name: binaryName, root: runcRoot }) };

    // A CA bundle that does not exist: node would warn on stderr if it read it (bin/ hides it from node).
    const caCerts = path.join(tmpRoot, 'no-such-ca.pem');
    const started = await shims.start(bundle, id, events.socket, Buffer.from(messageType('google.protobuf.Any').encode({ type_url: optsAny.type_url, value: optsAny.value }).finish()),
      { NODE_EXTRA_CA_CERTS: caCerts });
    t.equal(started.code, 0, `start exits 0 (${started.stderr})`);
    t.equal(started.stderr, '', 'start writes nothing to stderr (node never read NODE_EXTRA_CA_CERTS)');
    t.match(started.stdout, /^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/, 'start prints only the address');
    t.equal(fs.readFileSync(path.join(bundle, 'address'), 'utf8'), started.stdout, 'address file written');
    const shim = await connect(started.stdout);
    t.teardown(() => shim.client.close());
    // The launcher's start stays on as the daemon (docs/shim-contract.md): one node, shown as the shim.
    const argv = fs.readFileSync(`/proc/${shim.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    t.equal(argv[0], 'containerd-shim-runcts-v2', 'the daemon\'s argv[0] names the shim');
    t.notOk(argv.includes('start'), 'the daemon carries no action word');
    t.equal(procStatus(shim.pid, 'NSsid'), String(shim.pid), 'the daemon leads a session of its own');
    for (const fd of [0, 1, 2]) t.equal(fs.readlinkSync(`/proc/${shim.pid}/fd/${fd}`), '/dev/null', `daemon fd ${fd} is /dev/null`);

    const created = await shim.call('Create', shims.createReq(id, bundle, { rootfs: shims.bindRootfs(), options: optsAny }));
    t.ok(created.pid > 0, 'Create returns the init pid');
    t.ok(fs.existsSync(path.join(runcRoot, NS, id)), `${binary} state lives under Root/<namespace>`);
    t.ok(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(bundle, 'rootfs')), 'rootfs mounted in the bundle');
    t.same(JSON.parse(fs.readFileSync(path.join(bundle, 'options.json'), 'utf8')).binary_name, binaryName, 'options persisted for delete');
    let st = await shim.call('State', { id, exec_id: '' });
    t.equal(st.status, STATUS.CREATED, 'State: CREATED');
    t.equal(st.pid, created.pid);

    const waiting = shim.call('Wait', { id, exec_id: '' });
    const s = await shim.call('Start', { id, exec_id: '' });
    t.equal(s.pid, created.pid, 'Start returns the same pid');
    const w = await waiting;
    t.equal(w.exit_status, 3, 'Wait returns the exit status');
    t.ok(w.exited_at.seconds > 0, 'Wait returns exited_at');
    const out = fs.readFileSync(path.join(bundle, 'out.log'), 'utf8');
    t.match(out, `hello from ${binary}`, 'stdout reached the file before Wait returned');
    t.match(out, 'to-stderr', 'stderr too');

    st = await shim.call('State', { id, exec_id: '' });
    t.equal(st.status, STATUS.STOPPED, 'State: STOPPED');
    t.equal(st.exit_status, 3, 'State: exit status');

    const d = await shim.call('Delete', { id, exec_id: '' });
    t.equal(d.exit_status, 3, 'Delete returns the exit status');
    t.equal(d.pid, created.pid, 'Delete returns the pid');
    t.notOk(fs.existsSync(path.join(runcRoot, NS, id)), 'runtime state removed');
    t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(bundle, 'rootfs')), 'rootfs unmounted');
    await expectCode(t, shim.call('State', { id, exec_id: '' }), Code.NotFound, 'State after Delete');
    // What containerd's `delete` after the disconnect prints, without a node start-up.
    const left = fs.readFileSync(path.join(bundle, 'delete-response.pb'));
    const DeleteResponse = messageType('containerd.task.v2.DeleteResponse');
    const leftResponse = DeleteResponse.toObject(DeleteResponse.decode(left), { longs: Number }) as { pid: number; exit_status: number; exited_at: { seconds: number } };
    t.same([leftResponse.pid, leftResponse.exit_status], [created.pid, 3], 'the daemon left the DeleteResponse: real pid and status');
    t.equal(leftResponse.exited_at.seconds, Number(w.exited_at.seconds), 'and the real exit time');

    t.ok(await events.waitFor(() => events.for(id).length >= 4), 'four events arrived');
    const evs = events.for(id);
    t.same(evs.map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], 'create, start, exit, delete in order');
    t.same(evs.map((e) => e.type), ['containerd.events.TaskCreate', 'containerd.events.TaskStart', 'containerd.events.TaskExit', 'containerd.events.TaskDelete']);
    t.ok(evs.every((e) => e.namespace === NS), 'events carry the namespace');
    t.equal(evs[0].event.pid, created.pid);
    t.equal(evs[0].event.bundle, bundle);
    t.equal(evs[1].event.pid, created.pid);
    t.same([evs[2].event.id, evs[2].event.pid, evs[2].event.exit_status], [id, created.pid, 3], 'TaskExit: id, pid, status');
    t.same([evs[3].event.pid, evs[3].event.exit_status], [created.pid, 3], 'TaskDelete: pid, status');

    if (binary === 'wrapper') {
      const calls = fs.readFileSync(path.join(tmpRoot, 'runc-recording.calls'), 'utf8').split('\n').filter(Boolean);
      t.same(calls.map((c) => c.split(' ').find((w) => ['create', 'start', 'delete'].includes(w))), ['create', 'start', 'delete'], 'the shim ran BinaryName for create, start, delete');
      t.ok(calls.every((c) => c.includes(`--root ${path.join(runcRoot, NS)}`)), 'with --root <Root>/<namespace>');
      t.ok(calls.every((c) => c.endsWith(`ca=${caCerts} status=unset`)), 'runc gets NODE_EXTRA_CA_CERTS as containerd gave it, and not the launcher\'s status fd');
    }

    await shim.call('Shutdown', { id, now: false });
    t.ok(await waitGone(shim.pid), 'shim exits after Shutdown with no containers');
    t.notOk(fs.existsSync(started.stdout.replace('unix://', '')), 'socket removed');
  });
}

t.test('BinaryName=crun: crun runs the container, or its own refusal reaches the caller', async (t) => {
  // crun refuses hybrid cgroup hosts whose unified hierarchy has controllers; where it works, it must run.
  const id = 'crun-probe';
  const bundle = shims.bundle(id, ['sh', '-c', 'echo crun says hi']);
  const started = await shims.start(bundle, id, path.join(tmpRoot, 'ev-none.sock'));
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());
  const optsAny = { type_url: 'containerd.runc.v1.Options', value: runcOptions({ binary_name: 'crun' }) };
  let created: { pid: number } | undefined;
  try {
    created = await shim.call('Create', shims.createReq(id, bundle, { rootfs: shims.bindRootfs(), options: optsAny }));
  } catch (err) {
    t.match((err as Error).message, /^OCI runtime create failed: .*(cgroup|crun)/, `crun's own reason: ${(err as Error).message}`);
    t.notOk(fs.existsSync(path.join('/run/containerd/runc', NS, id)), 'nothing left behind');
  }
  if (created) {
    await shim.call('Start', { id, exec_id: '' });
    t.equal((await shim.call('Wait', { id, exec_id: '' })).exit_status, 0);
    t.match(fs.readFileSync(path.join(bundle, 'out.log'), 'utf8'), 'crun says hi');
    await shim.call('Delete', { id, exec_id: '' });
  }
  t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(bundle, 'rootfs')), 'rootfs unmounted');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

t.test('wrong ids and wrong states answer with containerd\'s status codes', async (t) => {
  const events = shims.events('codes');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'codes';
  const bundle = shims.bundle(id, ['sleep', '1000']);
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());

  await expectCode(t, shim.call('State', { id: 'nope', exec_id: '' }), Code.NotFound, 'State of an unknown id');
  await expectCode(t, shim.call('Kill', { id: 'nope', exec_id: '', signal: 9, all: false }), Code.NotFound, 'Kill of an unknown id');
  await expectCode(t, shim.call('Create', shims.createReq('bad', path.join(tmpRoot, 'no-such-bundle'))), Code.InvalidArgument, 'Create with a bundle without config.json');

  await shim.call('Create', shims.createReq(id, bundle));
  await expectCode(t, shim.call('Create', shims.createReq(id, bundle)), Code.AlreadyExists, 'second Create of one id');
  await expectCode(t, shim.call('State', { id, exec_id: 'no-such-exec' }), Code.NotFound, 'unknown exec id');
  await expectCode(t, shim.call('Exec', { id, exec_id: 'e1', terminal: false, stdin: '', stdout: '', stderr: '' }), Code.InvalidArgument, 'Exec without a process spec');
  await expectCode(t, shim.call('Exec', { id: 'nope', exec_id: 'e1', terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['true']) }), Code.NotFound, 'Exec into an unknown container');
  await shim.call('Start', { id, exec_id: '' });
  await expectCode(t, shim.call('Start', { id, exec_id: '' }), Code.FailedPrecondition, 'Start of a running task');
  await expectCode(t, shim.call('Delete', { id, exec_id: '' }), Code.FailedPrecondition, 'Delete of a running task');

  const pids = await shim.call('Pids', { id });
  const st = await shim.call('State', { id, exec_id: '' });
  t.same(pids.processes.map((p: { pid: number }) => p.pid), [st.pid], 'Pids lists the init');

  await shim.call('Shutdown', { id, now: false });
  t.ok(alive(shim.pid), 'Shutdown is ignored while a container exists');

  await shim.call('Kill', { id, exec_id: '', signal: 9, all: false });
  const w = await shim.call('Wait', { id, exec_id: '' });
  t.equal(w.exit_status, 137, 'SIGKILL gives 137');
  await expectCode(t, shim.call('Kill', { id, exec_id: '', signal: 9, all: false }), Code.NotFound, 'Kill after exit');
  await expectCode(t, shim.call('Exec', { id, exec_id: 'late', terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['true']) }), Code.FailedPrecondition, 'Exec into a stopped container');
  await expectCode(t, shim.call('Start', { id, exec_id: '' }), Code.FailedPrecondition, 'Start after exit');
  await shim.call('Delete', { id, exec_id: '' });
  await expectCode(t, shim.call('Delete', { id, exec_id: '' }), Code.NotFound, 'second Delete');

  // A runtime failure is a clear error, and leaves the shim serving.
  const badId = 'no-exe';
  const badBundle = shims.bundle(badId, ['/does-not-exist']);
    try {
    await shim.call('Create', shims.createReq(badId, badBundle));
    t.fail('Create of a missing executable must fail');
  } catch (err) {
    t.match((err as Error).message, /OCI runtime create failed: .*does-not-exist/, 'runc\'s own reason is in the error');
  }
  await expectCode(t, shim.call('State', { id: badId, exec_id: '' }), Code.NotFound, 'nothing left of the failed Create');

  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits once the last container is gone');
});

t.test('Pause/Resume/Update/Stats/Checkpoint over ttrpc: states, events, status codes, metrics', async (t) => {
  const events = shims.events('res');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'resources';
  const bundle = shims.bundle(id, ['sh', '-c', 'while :; do :; done']);
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());
  const PAUSED = 4;

  for (const m of ['Pause', 'Resume', 'Stats']) await expectCode(t, shim.call(m, { id: 'nope' }), Code.NotFound, `${m} of an unknown id`);
  await shim.call('Create', shims.createReq(id, bundle));
  await expectCode(t, shim.call('Pause', { id }), Code.FailedPrecondition, 'Pause before Start');
  await expectCode(t, shim.call('Update', { id }), Code.InvalidArgument, 'Update without resources');
  await shim.call('Start', { id, exec_id: '' });

  await shim.call('Pause', { id });
  t.equal((await shim.call('State', { id, exec_id: '' })).status, PAUSED, 'State: PAUSED');
  await expectCode(t, shim.call('Pause', { id }), Code.FailedPrecondition, 'second Pause');
  await expectCode(t, shim.call('Exec', { id, exec_id: 'e', terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['true']) }), Code.FailedPrecondition, 'Exec into a paused container');
  await expectCode(t, shim.call('Delete', { id, exec_id: '' }), Code.FailedPrecondition, 'Delete of a paused container');
  const cpu1 = await cpuUsage(shim, id);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await cpuUsage(shim, id), cpu1, 'no cpu used while paused');
  await shim.call('Resume', { id });
  t.equal((await shim.call('State', { id, exec_id: '' })).status, STATUS.RUNNING, 'State: RUNNING after Resume');
  await expectCode(t, shim.call('Resume', { id }), Code.FailedPrecondition, 'Resume of a running container');
  await new Promise((r) => setTimeout(r, 300));
  t.ok((await cpuUsage(shim, id)) > cpu1, 'cpu used again after Resume');

  const resources = { memory: { limit: 48 * 1024 * 1024 }, cpu: { quota: 30000, period: 100000 } };
  await shim.call('Update', { id, resources: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify(resources)) } });
  const m = await metrics(shim, id);
  t.equal(Number(m.v1 ? m.memory.usage.limit : m.memory.usage_limit), 48 * 1024 * 1024, 'Stats shows the updated memory limit');
  t.ok(Number(m.pids.current) >= 1, 'pids.current counts the init');
  t.same(fs.readdirSync(bundle).filter((f) => f.startsWith('.update-')), [], 'no resources file left in the bundle');

  await expectCode(t, shim.call('Checkpoint', { id, path: '' }), Code.InvalidArgument, 'Checkpoint without a path');
  const criuWorks = spawnSync('criu', ['check']).status === 0;
  const image = path.join(tmpRoot, 'ckpt');
  if (criuWorks) {
    await shim.call('Checkpoint', { id, path: image });
    t.ok(fs.readdirSync(image).length > 0, 'criu wrote the image');
    t.ok(await events.waitFor(() => events.for(id).some((e) => e.topic === '/tasks/checkpointed')), '/tasks/checkpointed');
  } else {
    try {
      await shim.call('Checkpoint', { id, path: image });
      t.fail('Checkpoint must fail where criu does not work');
    } catch (err) {
      t.equal((err as TtrpcError).code, Code.FailedPrecondition, 'FailedPrecondition where criu does not work');
      t.match((err as Error).message, /checkpoint needs criu, which does not work on this machine: \S/, 'says why');
    }
    t.notOk(fs.existsSync(path.join(bundle, 'criu-work')), 'no criu work directory left');
  }
  t.equal((await shim.call('State', { id, exec_id: '' })).status, STATUS.RUNNING, 'still running after Checkpoint (leave-running)');

  await shim.call('Pause', { id });
  await shim.call('Kill', { id, exec_id: '', signal: 9, all: false });
  t.equal((await shim.call('Wait', { id, exec_id: '' })).exit_status, 137, 'a paused container can be killed');
  await expectCode(t, shim.call('Update', { id, resources: { type_url: 'x', value: Buffer.from('{}') } }), Code.FailedPrecondition, 'Update of a stopped container');
  await shim.call('Delete', { id, exec_id: '' });
  t.same(events.for(id).map((e) => e.topic).filter((x) => x !== '/tasks/checkpointed'),
    ['/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed', '/tasks/paused', '/tasks/exit', '/tasks/delete'], 'events in order');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

async function metrics(shim: DirectShim, id: string): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await shim.call('Stats', { id });
  if (r.stats.type_url !== 'io.containerd.cgroups.v1.Metrics' && r.stats.type_url !== 'io.containerd.cgroups.v2.Metrics') throw new Error(`unexpected type ${r.stats.type_url}`);
  const type = messageType(r.stats.type_url);
  return { ...type.toObject(type.decode(r.stats.value), { longs: String, defaults: true }), v1: r.stats.type_url.endsWith('v1.Metrics') };
}

async function cpuUsage(shim: DirectShim, id: string): Promise<number> {
  const m = await metrics(shim, id);
  return Number(m.v1 ? m.cpu.usage.total : m.cpu.usage_usec);
}

t.test('exec: own stdio, status, events, id reuse, ordering with the init, no files left in the bundle', async (t) => {
  const events = shims.events('exec');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'execs';
  const bundle = shims.bundle(id, ['sleep', '1000']);
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());
  const bundleFiles = () => fs.readdirSync(bundle).sort();
  await shim.call('Create', shims.createReq(id, bundle));
  await shim.call('Start', { id, exec_id: '' });
  const before = bundleFiles();

  const out = path.join(tmpRoot, 'exec-out.log');
  const execReq = (execId: string, args: string[]) => ({ id, exec_id: execId, terminal: false, stdin: '', stdout: out, stderr: out, spec: execSpec(args) });
  await shim.call('Exec', execReq('e1', ['sh', '-c', 'echo exec says hi; exit 5']));
  await expectCode(t, shim.call('Exec', execReq('e1', ['true'])), Code.AlreadyExists, 'a second exec with a live id');
  let st = await shim.call('State', { id, exec_id: 'e1' });
  t.equal(st.status, STATUS.CREATED, 'exec State: CREATED before Start');
  const waiting = shim.call('Wait', { id, exec_id: 'e1' });
  const s1 = await shim.call('Start', { id, exec_id: 'e1' });
  t.ok(s1.pid > 0, 'exec Start returns its pid');
  const w = await waiting;
  t.equal(w.exit_status, 5, 'exec Wait returns its status');
  t.match(fs.readFileSync(out, 'utf8'), 'exec says hi', 'exec output delivered before Wait returned');
  st = await shim.call('State', { id, exec_id: 'e1' });
  t.same([st.status, st.exit_status, st.pid], [STATUS.STOPPED, 5, s1.pid], 'exec State: STOPPED, status, pid');
  const d = await shim.call('Delete', { id, exec_id: 'e1' });
  t.same([d.exit_status, d.pid], [5, s1.pid], 'exec Delete returns status and pid');
  await expectCode(t, shim.call('State', { id, exec_id: 'e1' }), Code.NotFound, 'deleted exec is gone');

  await shim.call('Exec', execReq('e1', ['true']));
  await shim.call('Start', { id, exec_id: 'e1' });
  t.equal((await shim.call('Wait', { id, exec_id: 'e1' })).exit_status, 0, 'exec id reused after delete');
  await shim.call('Delete', { id, exec_id: 'e1' });

  await shim.call('Exec', execReq('long', ['sleep', '1000']));
  const long = await shim.call('Start', { id, exec_id: 'long' });
  const pids = await shim.call('Pids', { id });
  const withExec = pids.processes.find((p: { pid: number }) => p.pid === long.pid);
  t.ok(withExec?.info, 'Pids attaches details to the exec pid');
  const details = messageType('containerd.runc.v1.ProcessDetails').decode(withExec.info.value) as unknown as { exec_id: string };
  t.equal(details.exec_id, 'long', 'ProcessDetails carries the exec id');
  t.same(bundleFiles(), before, 'no per-exec file left in the bundle');

  // Killing the init kills the exec (pid namespace); the exec's exit must come first.
  await shim.call('Kill', { id, exec_id: '', signal: 9, all: false });
  t.equal((await shim.call('Wait', { id, exec_id: '' })).exit_status, 137);
  t.equal((await shim.call('Wait', { id, exec_id: 'long' })).exit_status, 137, 'the exec died with its container');
  await shim.call('Delete', { id, exec_id: '' });
  t.ok(await events.waitFor(() => events.for(id).some((e) => e.topic === '/tasks/delete')), 'delete event arrived');
  const evs = events.for(id).map((e) => `${e.topic}:${e.event.exec_id || e.event.id || ''}`);
  t.same(evs, [
    '/tasks/create:', '/tasks/start:',
    '/tasks/exec-added:e1', '/tasks/exec-started:e1', '/tasks/exit:e1',
    '/tasks/exec-added:e1', '/tasks/exec-started:e1', '/tasks/exit:e1',
    '/tasks/exec-added:long', '/tasks/exec-started:long', '/tasks/exit:long',
    `/tasks/exit:${id}`, `/tasks/delete:${id}`,
  ], 'exec events in order; the exec exit before the init exit');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

t.test('without its own pid namespace, the init exit kills the rest; exec exits still come first', async (t) => {
  const events = shims.events('hostpid');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'hostpid';
  // The init leaves a background child behind: only kill --all gets rid of it.
  const marker = `runcts-orphan-${process.pid}`;
  const bundle = shims.bundle(id, ['sh', '-c', `sh -c 'sleep 1000; :' ${marker} & exec sleep 1000`], { hostPid: true });
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());
  await shim.call('Create', shims.createReq(id, bundle));
  await shim.call('Start', { id, exec_id: '' });
  const execs = ['x1', 'x2', 'x3'];
  for (const e of execs) {
    await shim.call('Exec', { id, exec_id: e, terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['sleep', '1000']) });
    await shim.call('Start', { id, exec_id: e });
  }
  t.ok(await waitForMarker(marker, true), 'the background child runs');
  await shim.call('Kill', { id, exec_id: '', signal: 9, all: false });
  t.equal((await shim.call('Wait', { id, exec_id: '' })).exit_status, 137);
  for (const e of execs) t.equal((await shim.call('Wait', { id, exec_id: e })).exit_status, 137, `exec ${e} killed with the init`);
  t.ok(await waitForMarker(marker, false), 'the background child was killed too');
  await shim.call('Delete', { id, exec_id: '' });
  t.ok(await events.waitFor(() => events.for(id).some((e) => e.topic === '/tasks/delete')));
  const exits = events.for(id).filter((e) => e.topic === '/tasks/exit').map((e) => e.event.id);
  t.equal(exits.length, 4, 'one exit per process');
  t.equal(exits[3], id, 'the init exit is the last one');
  t.same(exits.slice(0, 3).sort(), execs, 'every exec exit before it');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

async function waitForMarker(marker: string, present: boolean): Promise<boolean> {
  const end = Date.now() + 10_000;
  for (;;) {
    const found = (await run('pgrep', ['-f', '--', marker])).stdout.trim() !== '';
    if (found === present) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('two concurrent starts of one sandbox group end with one daemon', async (t) => {
  const events = shims.events('group');
  await events.listen();
  t.teardown(() => events.close());
  const group = { 'io.kubernetes.cri.sandbox-id': 'sandbox-1' };
  const b1 = shims.bundle('g1', ['sleep', '1000'], { annotations: group });
  const b2 = shims.bundle('g2', ['sleep', '1000'], { annotations: group });
  const [s1, s2] = await Promise.all([shims.start(b1, 'g1', events.socket), shims.start(b2, 'g2', events.socket)]);
  t.equal(s1.code, 0, s1.stderr);
  t.equal(s2.code, 0, s2.stderr);
  t.equal(s1.stdout, s2.stdout, 'both print the same address');
  const daemons = (await run('pgrep', ['-f', '--', `-address ${shims.containerdAddress} `])).stdout.trim().split('\n').filter(Boolean);
  t.equal(daemons.length, 1, `exactly one daemon (${daemons.join(',')})`);

  const shim = await connect(s1.stdout);
  t.teardown(() => shim.client.close());
  for (const [id, b] of [['g1', b1], ['g2', b2]]) {
    await shim.call('Create', shims.createReq(id, b));
    await shim.call('Start', { id, exec_id: '' });
  }
  t.equal((await shim.call('Connect', { id: 'g2' })).shim_pid, shim.pid, 'both containers in one shim');
  for (const id of ['g1', 'g2']) {
    await shim.call('Kill', { id, exec_id: '', signal: 9, all: false });
    await shim.call('Wait', { id, exec_id: '' });
    await shim.call('Delete', { id, exec_id: '' });
    await shim.call('Shutdown', { id, now: false });
  }
  t.ok(await waitGone(shim.pid), 'the group\'s shim exits after its last container');
});

t.test('events queued while containerd is unreachable arrive in order once it is back', async (t) => {
  const events = shims.events('late');
  const id = 'late';
  const bundle = shims.bundle(id, ['true']);
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  t.teardown(() => shim.client.close());
  await shim.call('Create', shims.createReq(id, bundle));
  await shim.call('Start', { id, exec_id: '' });
  await shim.call('Wait', { id, exec_id: '' });
  await shim.call('Delete', { id, exec_id: '' });
  await new Promise((r) => setTimeout(r, 500));
  await events.listen();
  t.teardown(() => events.close());
  t.ok(await events.waitFor(() => events.for(id).length >= 4, 15_000), 'backlog delivered');
  t.same(events.for(id).map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], 'in order, each once');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

// Both ways the shim binary runs: the compiled modules (tap's NODE_OPTIONS, where a dist/ mutant
// shows) and, as containerd runs it, the startup snapshot (whose own state once broke `delete`:
// no timer due later than the build's warm-up was armed, and delete exited before runc delete).
for (const mode of ['modules', 'snapshot'] as const) {
t.test(`delete after the shim was killed cleans up and prints a DeleteResponse (${mode})`, async (t) => {
  const events = shims.events(`crash-${mode}`);
  await events.listen();
  t.teardown(() => events.close());
  const id = `crash-${mode}`;
  const bundle = shims.bundle(id, ['sleep', '1000']);
  const started = await shims.start(bundle, id, events.socket);
  const shim = await connect(started.stdout);
  const created = await shim.call('Create', shims.createReq(id, bundle, { rootfs: shims.bindRootfs() }));
  await shim.call('Start', { id, exec_id: '' });
  shim.client.close();
  process.kill(shim.pid, 'SIGKILL');
  t.ok(await waitGone(shim.pid), 'shim killed');
  t.ok(alive(created.pid), 'container outlives its shim');

  const deleteEnv: NodeJS.ProcessEnv = { ...process.env };
  if (mode === 'snapshot') delete deleteEnv.NODE_OPTIONS;
  // stdout is a marshalled protobuf: read it as bytes.
  const r = spawnSync(SHIM, ['-namespace', NS, '-address', shims.containerdAddress, '-publish-binary', '/bin/true', '-id', id, '-bundle', bundle, 'delete'], {
    cwd: bundle, timeout: 30_000, env: { ...deleteEnv, TTRPC_ADDRESS: events.socket },
  });
  t.equal(r.status, 0, `delete exits 0 (${r.stderr})`);
  const resp = messageType('containerd.task.v2.DeleteResponse').decode(r.stdout) as unknown as { pid: number; exit_status: number };
  t.equal(resp.pid, created.pid, 'DeleteResponse.pid is the init pid');
  t.equal(resp.exit_status, 137, 'DeleteResponse.exit_status is 128+SIGKILL');
  t.ok(await waitGone(created.pid), 'container process gone');
  t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(bundle, 'rootfs')), 'rootfs unmounted');
  t.notOk(fs.existsSync(started.stdout.replace('unix://', '')), 'dead shim\'s socket removed');
});
}

t.test('the launcher: start status through fd 3, delete\'s fast path without node', async (t) => {
  // A `node` of our own first in PATH stands in for the shim: what the launcher does with it.
  const fakeBin = path.join(tmpRoot, 'fake-node-bin');
  fs.mkdirSync(fakeBin, { recursive: true });
  const fakeNode = path.join(fakeBin, 'node');
  const marker = path.join(tmpRoot, 'fake-node-ran');
  const env = (script: string) => {
    fs.writeFileSync(fakeNode, `#!/bin/sh\necho "$@" >> ${marker}\n${script}\n`, { mode: 0o755 });
    // No snapshot for a node that did not build it: the launcher takes the modules.
    return { ...process.env, PATH: `${fakeBin}:${process.env.PATH}`, NODE_OPTIONS: '' };
  };
  const args = ['-namespace', NS, '-address', shims.containerdAddress, '-publish-binary', '/bin/true', '-id', 'launcher'];

  fs.rmSync(marker, { force: true });
  let r = await run(SHIM, [...args, 'start'], { env: env('printf unix:///x; printf 0 >&3; exec 3>&-; exec sleep 2 >/dev/null 2>&1 </dev/null'), timeoutMs: 10_000 });
  t.equal(r.code, 0, 'status 0 from fd 3: start exits 0 while its node goes on');
  t.equal(r.stdout, 'unix:///x', 'node\'s stdout is start\'s');
  t.notMatch(fs.readFileSync(marker, 'utf8'), /\bstart\b/, 'node does not get the action word');

  r = await run(SHIM, [...args, 'start'], { env: env('echo refused >&2; printf 5 >&3; exit 5'), timeoutMs: 10_000 });
  t.equal(r.code, 5, 'the status node wrote is start\'s exit status');
  t.match(r.stderr, /refused/, 'and its stderr reaches containerd');

  r = await run(SHIM, [...args, 'start'], { env: env('kill -9 $$'), timeoutMs: 10_000 });
  t.equal(r.code, 1, 'a node killed before it wrote a status: start fails');

  r = await run(SHIM, [...args, 'start'], { env: env('cat > ' + path.join(tmpRoot, 'fake-node-stdin') + '; printf 0 >&3'), input: Buffer.from('runtime-options'), timeoutMs: 10_000 });
  t.equal(r.code, 0);
  t.equal(fs.readFileSync(path.join(tmpRoot, 'fake-node-stdin'), 'utf8'), 'runtime-options', 'node reads containerd\'s stdin, not /dev/null');

  const bundle = fs.mkdtempSync(path.join(tmpRoot, 'launcher-bundle-'));
  const response = Buffer.from([0x08, 0x2a, 0x10, 0x03]); // DeleteResponse{pid: 42, exit_status: 3}
  fs.writeFileSync(path.join(bundle, 'delete-response.pb'), response);
  fs.rmSync(marker, { force: true });
  r = await run(SHIM, [...args, '-bundle', bundle, 'delete'], { env: env('exit 9'), timeoutMs: 10_000 });
  t.equal(r.code, 0, 'delete with a response left: exits 0');
  t.same(r.stdout, response.toString(), 'prints the response the daemon left, byte for byte');
  t.notOk(fs.existsSync(marker), 'without starting node');
  r = await run(SHIM, [...args, `-bundle=${bundle}`, 'delete'], { env: env('exit 9'), cwd: tmpRoot, timeoutMs: 10_000 });
  t.same(r.stdout, response.toString(), '-bundle=B is read too');
  r = await run(SHIM, [...args, 'delete'], { env: env('exit 9'), cwd: bundle, timeoutMs: 10_000 });
  t.same(r.stdout, response.toString(), 'and, without -bundle, the working directory');
  fs.rmSync(path.join(bundle, 'delete-response.pb'));
  r = await run(SHIM, [...args, '-bundle', bundle, 'delete'], { env: env('exit 9'), timeoutMs: 10_000 });
  t.equal(r.code, 9, 'without it, delete is node\'s');
  t.match(fs.readFileSync(marker, 'utf8'), /-bundle .* delete/, 'with the action word');
});

t.test('-v prints the version and flags are checked', async (t) => {
  const v = await run(SHIM, ['-v']);
  t.equal(v.code, 0);
  t.match(v.stdout, /containerd-shim-runcts-v2|main\.js/);
  t.match(v.stdout, /Version:\s+\d+\.\d+\.\d+/);
  // `make` builds the startup snapshot; the shim binary must start from it.
  t.match(v.stdout, /Snapshot: yes/, 'started from the V8 startup snapshot');
  const blob = path.join(repoRoot(), 'dist/runcts.blob');
  t.ok(fs.existsSync(blob), 'dist/runcts.blob built');
  // A node newer than the snapshot cannot load it: the wrapper then runs the modules instead.
  const old = new Date(Date.now() - 365 * 24 * 3600 * 1000);
  const mtime = fs.statSync(blob).mtime;
  fs.utimesSync(blob, old, old);
  try {
    const fallback = await run(SHIM, ['-v']);
    t.equal(fallback.code, 0, 'runs without a usable snapshot');
    t.match(fallback.stdout, /Snapshot: no/, 'a snapshot older than node is not used');
  } finally {
    fs.utimesSync(blob, mtime, mtime);
  }
  // V8 flags in NODE_OPTIONS would make node refuse the snapshot: the modules run instead.
  const withOptions = await run(SHIM, ['-v'], { env: { ...process.env, NODE_OPTIONS: '--max-semi-space-size=1' } });
  t.equal(withOptions.code, 0, 'runs with NODE_OPTIONS set');
  t.match(withOptions.stdout, /Snapshot: no/, 'NODE_OPTIONS: the snapshot is not used');
  const bad = await run(SHIM, ['-bogus']);
  t.not(bad.code, 0, 'unknown flag refused');
  t.match(bad.stderr, /flag provided but not defined: -bogus/);
  const nons = await run(SHIM, ['-id', 'x', 'start']);
  t.equal(nons.code, 1, 'start without a namespace: exit 1');
  t.match(nons.stderr, /namespace/);
  // Through the launcher's status pipe: node's own status, not the launcher's fallback (1).
  const badStart = await run(SHIM, ['-bogus', 'start']);
  t.equal(badStart.code, 2, 'start with an unknown flag: node\'s exit status 2 reaches containerd');
  t.match(badStart.stderr, /flag provided but not defined: -bogus/);
  void os.tmpdir();
});

t.test('nothing is left behind: no shim process, socket or mount of these tests', async (t) => {
  await shims.assertNothingLeft(t, 6);
});
