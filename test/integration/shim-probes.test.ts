// What a liveness probe costs and how the exit of a process whose pipe stays open is reported:
// - one exec spawns exactly one process of the shim's (`runc exec`: the execve calls of the
//   shim's children, counted with strace), and State, Pids, Stats and Wait spawn none;
// - `sh -c "sleep 60 & echo ok"`, as an exec (with and without a terminal) and as an init without
//   its own pid namespace: its exit
//   is reported (Wait and TaskExit) within a second with `ok` delivered, though the background
//   sleep holds the pipe; output written before the exit is never lost, and a reader too slow to
//   take it all holds the report back for a bounded time only.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { DirectShims, STATUS, execSpec, retireShim, waitGone, type DirectShim } from './harness';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

/** A fifo read the way containerd reads it (opened before the process, never EOF while open). */
class FifoReader {
  readonly chunks: Buffer[] = [];
  private readonly socket: net.Socket;
  constructor(readonly file: string) {
    const mk = spawnSync('mkfifo', [file]);
    if (mk.status !== 0) throw new Error(`mkfifo: ${mk.stderr}`);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    this.socket = new net.Socket({ fd, readable: true, writable: false });
    this.socket.on('data', (c: Buffer) => this.chunks.push(c));
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  get length(): number {
    return this.chunks.reduce((n, c) => n + c.length, 0);
  }
  pause(): void { this.socket.pause(); }
  resume(): void { this.socket.resume(); }
  close(): void { this.socket.destroy(); }
  async waitFor(pred: () => boolean, ms = 5000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return pred();
  }
}

/** strace -f on the shim: the execve calls of its children (and theirs), until stop(). */
class ExecveTrace {
  private readonly out: string;
  private readonly proc: ReturnType<typeof spawn>;
  private readonly exited: Promise<void>;
  private constructor(pid: number, dir: string) {
    this.out = path.join(dir, `strace-${pid}-${Date.now()}.txt`);
    this.proc = spawn('strace', ['-f', '-qq', '-s', '256', '-e', 'trace=execve', '-e', 'signal=none', '-o', this.out, '-p', String(pid)], { stdio: 'ignore' });
    this.exited = new Promise((r) => this.proc.once('exit', () => r()));
  }
  static async attach(pid: number, dir: string): Promise<ExecveTrace> {
    const trace = new ExecveTrace(pid, dir);
    // Attached once the tracer shows up in the shim's status.
    const end = Date.now() + 5000;
    while (Date.now() < end) {
      const tracer = /^TracerPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      if (tracer && tracer !== '0') return trace;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error('strace did not attach');
  }
  /** Detach; the execve lines: [pid, file, argv]. */
  async stop(): Promise<Array<{ pid: number; file: string; argv: string }>> {
    this.proc.kill('SIGINT');
    await this.exited;
    const lines = fs.readFileSync(this.out, 'utf8').split('\n');
    const calls: Array<{ pid: number; file: string; argv: string }> = [];
    for (const l of lines) {
      // Only the calls that ran a program: a PATH lookup tries (and fails) other directories first.
      const m = /^(\d+)\s+execve\("([^"]*)", (\[.*?\]).* = 0$/.exec(l);
      if (m) calls.push({ pid: Number(m[1]), file: m[2]!, argv: m[3]! });
    }
    return calls;
  }
}

const runcPath = (spawnSync('sh', ['-c', 'command -v runc']).stdout.toString().trim()) || '/usr/sbin/runc';

async function runningContainer(t: Test, id: string, args = ['sleep', '1000']): Promise<{ shim: DirectShim; bundle: string; pid: number }> {
  const events = shims.events(id);
  await events.listen();
  t.teardown(() => events.close());
  const bundle = shims.bundle(id, args);
  const shim = await shims.startAndConnect(t, bundle, id, events.socket);
  const created = await shim.call('Create', shims.createReq(id, bundle));
  await shim.call('Start', { id, exec_id: '' });
  return { shim, bundle, pid: created.pid };
}

t.test('a probe exec spawns exactly one runc; State, Pids, Stats and Wait spawn nothing', async (t) => {
  const id = 'probe';
  const { shim, bundle, pid } = await runningContainer(t, id);
  const execReq = (execId: string) => ({ id, exec_id: execId, terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['true']) });

  const trace = await ExecveTrace.attach(shim.pid, shims.root);
  const N = 20;
  for (let i = 0; i < N; i++) {
    await shim.call('Exec', execReq(`p${i}`));
    const waiting = shim.call('Wait', { id, exec_id: `p${i}` });
    await shim.call('Start', { id, exec_id: `p${i}` });
    t.equal((await waiting).exit_status, 0, `exec p${i} exits 0`);
    await shim.call('Delete', { id, exec_id: `p${i}` });
  }
  const execCalls = await trace.stop();
  const runcCalls = execCalls.filter((c) => c.file === runcPath);
  t.equal(runcCalls.length, N, `${N} execs: ${runcCalls.length} runc processes`, { execCalls: execCalls.slice(0, 12) });
  t.ok(runcCalls.every((c) => /"exec", "--detach"/.test(c.argv)), 'each one a `runc exec --detach`');
  // Everything else exec'd under the shim is runc's own re-exec (runc init) and the container's `true`.
  const others = execCalls.filter((c) => c.file !== runcPath && c.file !== '/proc/self/exe' && !/"true"\]$/.test(c.argv));
  t.same(others, [], 'no other program is run for an exec');

  const quiet = await ExecveTrace.attach(shim.pid, shims.root);
  for (let i = 0; i < 25; i++) {
    t.equal((await shim.call('State', { id, exec_id: '' })).status, STATUS.RUNNING);
    const ps = await shim.call('Pids', { id });
    if (i === 0) t.same(ps.processes.map((p: { pid: number }) => p.pid), [pid], 'Pids: the init, from the cgroup');
    await shim.call('Stats', { id });
  }
  await shim.call('Exec', execReq('w'));
  const waitW = shim.call('Wait', { id, exec_id: 'w' });
  await shim.call('Start', { id, exec_id: 'w' });
  await waitW;
  const afterQuiet = (await quiet.stop()).filter((c) => c.file === runcPath);
  t.same(afterQuiet.map((c) => c.argv.match(/"(exec|ps|state|events|list)"/)?.[1]), ['exec'], '25 State, Pids and Stats and a Wait: no runc but the one exec');

  // No per-exec file is left in the bundle.
  const files = fs.readdirSync(bundle).sort();
  t.notOk(files.some((f) => /^p\d+|exec|process|\.pid$/.test(f) && f !== 'init.pid'), `bundle holds no per-exec file (${files.join(' ')})`);
  t.ok(await retireShim(shim, [id]), 'shim exits');
});

t.test('sh -c "sleep 60 & echo ok" as an exec: exit reported within a second, ok delivered', async (t) => {
  const id = 'drain';
  const { shim } = await runningContainer(t, id);
  const fifo = new FifoReader(path.join(shims.root, 'drain-exec.fifo'));
  t.teardown(() => fifo.close());
  await shim.call('Exec', { id, exec_id: 'bg', terminal: false, stdin: '', stdout: fifo.file, stderr: '', spec: execSpec(['sh', '-c', 'sleep 60 & echo ok']) });
  const started = Date.now();
  const waiting = shim.call('Wait', { id, exec_id: 'bg' });
  await shim.call('Start', { id, exec_id: 'bg' });
  const w = await waiting;
  const ms = Date.now() - started;
  t.equal(w.exit_status, 0, 'the shell exits 0');
  t.ok(ms < 1000, `Wait returned ${ms} ms after Start (the sleep still holds the pipe)`);
  t.ok(await fifo.waitFor(() => fifo.text === 'ok\n', 1000), `ok delivered (${JSON.stringify(fifo.text)})`);
  t.equal((await shim.call('State', { id, exec_id: 'bg' })).status, STATUS.STOPPED, 'State of the exec: STOPPED');
  await shim.call('Delete', { id, exec_id: 'bg' });
  t.ok(await retireShim(shim, [id]), 'shim exits');
});

t.test('the same with a terminal (kubectl exec -t): exit reported within a second, ok delivered', async (t) => {
  const id = 'drain-tty';
  const { shim } = await runningContainer(t, id);
  const fifo = new FifoReader(path.join(shims.root, 'drain-tty.fifo'));
  t.teardown(() => fifo.close());
  // The hang-up at the shell's exit would end a plain background child: this one ignores SIGHUP
  // and keeps the terminal open.
  const spec = execSpec(['sh', '-c', "trap '' HUP; sleep 60 & echo ok"]);
  spec.value = Buffer.from(JSON.stringify({ ...JSON.parse(spec.value.toString()), terminal: true }));
  await shim.call('Exec', { id, exec_id: 'tty', terminal: true, stdin: '', stdout: fifo.file, stderr: '', spec });
  const started = Date.now();
  const waiting = shim.call('Wait', { id, exec_id: 'tty' });
  await shim.call('Start', { id, exec_id: 'tty' });
  const w = await waiting;
  const ms = Date.now() - started;
  t.equal(w.exit_status, 0, 'the shell exits 0');
  t.ok(ms < 1000, `Wait returned ${ms} ms after Start (the sleep still holds the terminal)`);
  t.ok(await fifo.waitFor(() => fifo.text.includes('ok'), 1000), `ok delivered (${JSON.stringify(fifo.text)})`);
  await shim.call('Delete', { id, exec_id: 'tty' });
  t.ok(await retireShim(shim, [id]), 'shim exits');
});

t.test('the same as an init without its own pid namespace: exit and TaskExit within a second', async (t) => {
  const id = 'drain-init';
  const events = shims.events(id);
  await events.listen();
  t.teardown(() => events.close());
  const bundle = shims.bundle(id, ['sh', '-c', 'sleep 60 & echo ok'], { hostPid: true });
  const shim = await shims.startAndConnect(t, bundle, id, events.socket);
  const fifo = new FifoReader(path.join(shims.root, 'drain-init.fifo'));
  t.teardown(() => fifo.close());
  await shim.call('Create', shims.createReq(id, bundle, { stdout: fifo.file, stderr: '' }));
  const started = Date.now();
  const waiting = shim.call('Wait', { id, exec_id: '' });
  await shim.call('Start', { id, exec_id: '' });
  const w = await waiting;
  const ms = Date.now() - started;
  t.equal(w.exit_status, 0);
  t.ok(ms < 1000, `Wait returned ${ms} ms after Start`);
  t.ok(await events.waitFor(() => events.for(id).some((e) => e.topic === '/tasks/exit'), 1000), 'TaskExit published');
  t.ok(await fifo.waitFor(() => fifo.text === 'ok\n', 1000), `ok delivered (${JSON.stringify(fifo.text)})`);
  await shim.call('Delete', { id, exec_id: '' });
  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits');
});

t.test('output written before the exit is never lost: 4 MiB then exit, a background child holding the pipe, a reader that stalls', async (t) => {
  const id = 'drain-big';
  const { shim } = await runningContainer(t, id);
  const size = 4 << 20;
  const script = `sleep 60 & head -c ${size} /dev/zero | tr '\\0' x; echo END`;

  // A reader that keeps up: everything arrives, and the exit is reported promptly.
  const fast = new FifoReader(path.join(shims.root, 'drain-fast.fifo'));
  t.teardown(() => fast.close());
  await shim.call('Exec', { id, exec_id: 'fast', terminal: false, stdin: '', stdout: fast.file, stderr: '', spec: execSpec(['sh', '-c', script]) });
  const waitFast = shim.call('Wait', { id, exec_id: 'fast' });
  await shim.call('Start', { id, exec_id: 'fast' });
  await waitFast;
  t.ok(await fast.waitFor(() => fast.length === size + 4, 5000), `all ${size + 4} bytes arrived (${fast.length})`);
  t.ok(fast.text.endsWith('xEND\n'), 'ending with the last line written before the exit');

  // A reader that stalls for 3 s while 176 KiB, written before the exit, sit in the pipe, the
  // shim and the fifo (each buffers some 64 KiB, so the shell need not block): the report waits
  // a bounded time (2 s), then the rest follows once the reader reads again.
  const slowSize = 176 << 10;
  const slow = new FifoReader(path.join(shims.root, 'drain-slow.fifo'));
  t.teardown(() => slow.close());
  slow.pause();
  await shim.call('Exec', { id, exec_id: 'slow', terminal: false, stdin: '', stdout: slow.file, stderr: '', spec: execSpec(['sh', '-c', `sleep 60 & head -c ${slowSize} /dev/zero | tr '\\0' y; echo END`]) });
  const started = Date.now();
  const waitSlow = shim.call('Wait', { id, exec_id: 'slow' });
  await shim.call('Start', { id, exec_id: 'slow' });
  const resumeAt = setTimeout(() => slow.resume(), 3000);
  t.teardown(() => clearTimeout(resumeAt));
  await waitSlow;
  const ms = Date.now() - started;
  t.ok(ms >= 1500 && ms < 3000, `with the reader stalled the exit was reported after the bounded drain: ${ms} ms`);
  t.ok(await slow.waitFor(() => slow.length === slowSize + 4, 10_000), `after the reader resumed every byte arrived (${slow.length})`);
  t.ok(slow.text.endsWith('yEND\n'), 'in order, to the last line');
  await shim.call('Delete', { id, exec_id: 'fast' });
  await shim.call('Delete', { id, exec_id: 'slow' });
  t.ok(await retireShim(shim, [id]), 'shim exits');
});

t.test('nothing is left behind', async (t) => {
  await shims.assertNothingLeft(t, 5);
});
