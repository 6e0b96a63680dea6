// SIGUSR1 makes the daemon write a dump of its state into its log — containers, processes,
// pending execs, queued events, open fds — without disturbing service, and without node's default
// for the signal (a debugger listening on 127.0.0.1:9229).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import t from 'tap';
import { DirectShims, STATUS, execSpec, waitGone } from './harness';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

/** True when something accepts TCP connections on 127.0.0.1:port. */
function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

interface Dump {
  pid: number;
  fds: Record<string, string>;
  events: { queued: number; topics: string[] };
  ttrpc: { connections: number };
  tasks: { containers: Array<{ id: string; init?: { pid: number; state: string }; execs: Array<{ execId: string; pid: number; state: string }>; pendingExecs: { starting: number; running: string[] }; initExitHeld: boolean }> };
}

/** The dumps written into the bundle's log since offset. */
function dumpsIn(logFile: string, offset: number): Dump[] {
  return fs.readFileSync(logFile, 'utf8').slice(offset).split('\n').filter((l) => l.includes('"diagnostic dump"'))
    .map((l) => (JSON.parse(l) as { dump: Dump }).dump);
}

async function waitForDumps(logFile: string, offset: number, n: number): Promise<Dump[]> {
  const end = Date.now() + 10_000;
  let d = dumpsIn(logFile, offset);
  while (d.length < n && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    d = dumpsIn(logFile, offset);
  }
  return d;
}

t.test('SIGUSR1: containers, processes, pending execs, queued events and fds in the log; service goes on', async (t) => {
  const inspectorBefore = await tcpOpen(9229);
  // containerd "away": events queue up in the outbox, and the dump shows them.
  const events = shims.events('diag');
  t.teardown(() => events.close());
  const id = 'diag';
  const bundle = shims.bundle(id, ['sleep', '1000']);
  const shim = await shims.startAndConnect(t, bundle, id, events.socket);
  const logFile = path.join(bundle, 'log');
  const created = await shim.call('Create', shims.createReq(id, bundle));
  await shim.call('Start', { id, exec_id: '' });
  const execReq = (execId: string) => ({ id, exec_id: execId, terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['sleep', '1000']) });
  await shim.call('Exec', execReq('e1'));
  const e1 = await shim.call('Start', { id, exec_id: 'e1' });
  await shim.call('Exec', execReq('e2')); // added, not started

  const offset = fs.statSync(logFile).size;
  process.kill(shim.pid, 'SIGUSR1');
  const [dump] = await waitForDumps(logFile, offset, 1);
  if (!t.ok(dump, 'a dump arrived in the log')) return;
  t.equal(dump.pid, shim.pid, 'the daemon\'s own pid');
  const c = dump.tasks.containers.find((x) => x.id === id);
  t.same(c?.init, { pid: created.pid, state: 'running' }, 'the init: pid and state');
  t.same(c?.execs.map((e) => [e.execId, e.state]), [['e1', 'running'], ['e2', 'created']], 'the execs and their states');
  t.equal(c?.execs.find((e) => e.execId === 'e1')?.pid, e1.pid, 'the running exec\'s pid');
  t.same(c?.pendingExecs.running, ['e1'], 'the exec whose exit is still to come (the init exit would wait for it)');
  t.equal(c?.initExitHeld, false, 'no init exit held');
  t.same(dump.events.topics, ['/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/exec-added'], 'the queued events, oldest first');
  t.equal(dump.events.queued, 5);
  t.ok(dump.ttrpc.connections >= 1, 'our connection is counted');
  const fdNow = fs.readdirSync(`/proc/${shim.pid}/fd`).length;
  t.ok(Math.abs(Object.keys(dump.fds).length - fdNow) <= 2, `the fds listed (${Object.keys(dump.fds).length}) are the shim's (${fdNow})`);
  t.ok(Object.values(dump.fds).includes(logFile), 'including the log it writes to', { fds: dump.fds });
  t.ok(Object.values(dump.fds).some((v) => v.startsWith('socket:')), 'and its sockets');

  // Twenty dumps, each with State calls in flight: every call answers, every dump is written.
  // (One signal at a time: the kernel merges a signal sent again before the handler ran.)
  let answered = 0;
  let written = 1;
  for (let i = 0; i < 20; i++) {
    const calls = [shim.call('State', { id, exec_id: '' }), shim.call('State', { id, exec_id: 'e1' })];
    process.kill(shim.pid, 'SIGUSR1');
    for (const st of await Promise.all(calls)) if (st.status === STATUS.RUNNING) answered++;
    written = (await waitForDumps(logFile, offset, written + 1)).length;
  }
  t.equal(answered, 40, 'State answered throughout');
  t.equal(written, 21, 'twenty more dumps');
  t.equal(await tcpOpen(9229), inspectorBefore, 'no debugger port was opened (node\'s default for SIGUSR1)');

  // The outbox was only read: once containerd is back, every event arrives once, in order.
  await events.listen();
  t.ok(await events.waitFor(() => events.for(id).length >= 5, 15_000), 'the backlog arrives');
  t.same(events.for(id).map((e) => e.topic), dump.events.topics, 'exactly what the dump showed, in order');

  await shim.call('Kill', { id, exec_id: '', signal: 9, all: true });
  await shim.call('Wait', { id, exec_id: '' });
  await shim.call('Delete', { id, exec_id: 'e2' });
  await shim.call('Delete', { id, exec_id: 'e1' }).catch(() => undefined);
  await shim.call('Delete', { id, exec_id: '' });
  const again = fs.statSync(logFile).size;
  process.kill(shim.pid, 'SIGUSR1');
  const [empty] = await waitForDumps(logFile, again, 1);
  t.same(empty?.tasks.containers, [], 'after Delete the dump lists no container');
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

t.test('nothing is left behind', async (t) => {
  await shims.assertNothingLeft(t, 1);
});
