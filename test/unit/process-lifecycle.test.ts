// Process lifecycle and event order for one container (shim/runc/process/*, container.ts), with a
// fake runc, a fake reaper, fake stdio and a fake clock: no containerd, no real runc, no sockets.
// Every race window of DESIGN lesson 3 (seeds/002) is opened by hand: exits are delivered before
// `runc start` / `runc exec` return, before an exec's pid is known, while output still drains, while
// execs start or run; and the resulting event stream is checked.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import type { Logger } from '../../shim/framework/logger';
import type { Exit, Reaper } from '../../shim/framework/reaper';
import { Code, TtrpcError } from '../../shim/framework/ttrpc/codes';
import { Container, type ContainerDeps } from '../../shim/runc/container';
import { RuncError } from '../../shim/runc/errors';
import type { ProcessIO } from '../../shim/runc/io';
import { ExitOrdering, INIT_HOLD_LIMIT_MS, type Clock } from '../../shim/runc/ordering';
import { execProcessSpec, type ExecProcess } from '../../shim/runc/process/exec';
import { InitProcess } from '../../shim/runc/process/init';
import type { ShimProcess } from '../../shim/runc/process/lifecycle';
import type { CheckpointOptions, CreateOptions, ExecOptions, RuncApi } from '../../shim/runc/runc';

for (const v of ['AFTER_RUNC_START', 'AFTER_RUNC_EXEC', 'EXEC_EXIT']) {
  if (process.env[`RUNCTS_TEST_DELAY_${v}_MS`]) throw new Error('unit tests need the test delays off');
}

// ---------------------------------------------------------------------------------------------
// Fakes.

class Deferred<T> {
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  readonly promise = new Promise<T>((res, rej) => { this.resolve = res; this.reject = rej; });
}

/** Lets every pending promise chain run (setImmediate comes after all microtasks). */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

/**
 * Every fake answers at once, so whatever a call waits for has happened after a flush: a promise
 * still pending then never settles (a broken variant must fail its test, not hang the file).
 */
async function settled<T>(p: Promise<T>, what = 'the call'): Promise<T> {
  let done = false;
  const r = p.finally(() => { done = true; });
  r.catch(() => undefined); // a rejection is the caller's to check, after the flush
  await flush();
  if (!done) throw new Error(`${what} never settled`);
  return r;
}

class FakeClock implements Clock {
  now = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): { unref(): void } {
    const id = ++this.seq;
    this.timers.set(id, { at: this.now + ms, fn });
    return { unref: () => undefined, id } as { unref(): void };
  }
  clearTimeout(h: unknown): void {
    this.timers.delete((h as { id: number }).id);
  }
  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = end;
  }
}

/**
 * The reaper's contract (framework/reaper.ts) with exits delivered by hand: an exit nobody has
 * claimed yet is kept for the first wait(pid) whose mark is not later than its collection.
 */
class FakeReaper {
  private seq = 0;
  private readonly kept = new Map<number, { exit: Exit; seq: number }>();
  private readonly waiters = new Map<number, Array<(e: Exit) => void>>();
  readonly claims: Array<{ pid: number; since?: number }> = [];

  mark(): number {
    return this.seq;
  }
  wait(pid: number, since?: number): Promise<Exit> {
    this.claims.push({ pid, since });
    const k = this.kept.get(pid);
    if (k) {
      this.kept.delete(pid);
      if (since === undefined || k.seq >= since) return Promise.resolve(k.exit);
    }
    return new Promise((resolve) => this.waiters.set(pid, [...(this.waiters.get(pid) ?? []), resolve]));
  }
  /** The kernel reports `pid` exited. */
  exit(pid: number, status: number): void {
    const exit: Exit = { pid, status, exitedAt: new Date(Date.UTC(2026, 0, 1) + this.seq * 1000) };
    const ws = this.waiters.get(pid);
    if (ws) {
      this.waiters.delete(pid);
      for (const w of ws) w(exit);
    } else {
      this.kept.set(pid, { exit, seq: this.seq });
    }
    this.seq++;
  }
}

interface PendingExec {
  id: string;
  o: ExecOptions;
  /** The process file's content while runc ran. */
  spec: string;
  /** runc exec returns: the pid file holds `pid`. */
  ret(pid: number | string): void;
  /** runc exec fails (optionally after writing a pid file). */
  fail(msg: string, pid?: number): void;
}

/** runc whose start and exec return only when the test says so. */
class FakeRunc implements RuncApi {
  readonly calls: string[] = [];
  readonly starts: Array<Deferred<void>> = [];
  readonly execs: PendingExec[] = [];
  create(_id: string, _o: CreateOptions): Promise<void> {
    throw new Error('not used: the container is built around an existing init');
  }
  start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
    const d = new Deferred<void>();
    this.starts.push(d);
    return d.promise;
  }
  exec(id: string, o: ExecOptions): Promise<void> {
    this.calls.push(`exec ${id}`);
    const d = new Deferred<void>();
    this.execs.push({
      id, o, spec: fs.readFileSync(o.processFile, 'utf8'),
      ret: (pid) => {
        fs.writeFileSync(o.pidFile, String(pid));
        d.resolve();
      },
      fail: (msg, pid) => {
        if (pid !== undefined) fs.writeFileSync(o.pidFile, String(pid));
        d.reject(new RuncError('exec', 1, msg));
      },
    });
    return d.promise;
  }
  async kill(id: string, signal: number, all = false): Promise<void> {
    this.calls.push(`kill ${id} ${signal}${all ? ' --all' : ''}`);
  }
  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    this.calls.push(`delete ${id}${opts.force ? ' --force' : ''}`);
  }
  async ps(): Promise<number[]> {
    return [];
  }
  /** Pending `runc pause` calls: the test settles them. */
  readonly pauses: Array<Deferred<void>> = [];
  pause(id: string): Promise<void> {
    this.calls.push(`pause ${id}`);
    const d = new Deferred<void>();
    this.pauses.push(d);
    return d.promise;
  }
  async resume(id: string): Promise<void> {
    this.calls.push(`resume ${id}`);
  }
  async update(id: string, resourcesFile: string): Promise<void> {
    this.calls.push(`update ${id} ${fs.readFileSync(resourcesFile, 'utf8')}`);
  }
  async checkpoint(id: string, o: CheckpointOptions): Promise<void> {
    this.calls.push(`checkpoint ${id} ${o.imagePath}`);
  }
}

/** Stdio whose output keeps flowing after the exit until the test ends it; drained(ms) honours ms on the fake clock. */
class FakeIO {
  readonly childFds: [number, number, number] = [-1, -1, -1];
  readonly calls: string[] = [];
  readonly drainTimeouts: number[] = [];
  /** While set, output is still flowing: drained() waits for it (or for its timeout). */
  flowing: Deferred<void> | undefined;
  constructor(private readonly clock: FakeClock) {}
  closeChildEnds(): void { this.calls.push('closeChildEnds'); }
  startCopy(): void { this.calls.push('startCopy'); }
  async afterLaunch(): Promise<void> { this.closeChildEnds(); this.startCopy(); }
  resize(): void { this.calls.push('resize'); }
  closeStdin(): void { this.calls.push('closeStdin'); }
  close(): void { this.calls.push('close'); }
  drained(ms: number): Promise<boolean> {
    this.drainTimeouts.push(ms);
    const flowing = this.flowing;
    if (!flowing) return Promise.resolve(true);
    return new Promise((resolve) => {
      void flowing.promise.then(() => resolve(true));
      this.clock.setTimeout(() => resolve(false), ms);
    });
  }
}

function fakeLogger(lines: Array<[string, object, string?]>): Logger {
  const at = (level: string) => (obj: object, msg?: string) => { lines.push([level, obj, msg]); };
  const l = { trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), fatal: at('fatal') };
  return { ...l, child: () => l } as unknown as Logger;
}

// ---------------------------------------------------------------------------------------------
// A container around an init that `runc create` left behind (pid INIT_PID), wired as
// Container.create wires it, with every dependency fake.

const CID = 'c1';
const INIT_PID = 100;

type World = ReturnType<typeof world>;

function world(t: Test, opts: { killAllOnExit?: boolean } = {}) {
  const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-lifecycle-'));
  t.teardown(() => fs.rmSync(bundle, { recursive: true, force: true }));
  const clock = new FakeClock();
  const runc = new FakeRunc();
  const reaper = new FakeReaper();
  const logs: Array<[string, object, string?]> = [];
  const log = fakeLogger(logs);
  /** Events and Wait answers, in the order they happened. */
  const timeline: string[] = [];
  const deps: ContainerDeps = {
    namespace: 'ns', reaper: reaper as unknown as Reaper, log, debug: false,
    publish(topic, type, e) {
      const ev = e as Record<string, unknown>;
      if (type === 'TaskStart') timeline.push(`start ${ev.container_id} ${ev.pid}`);
      else if (type === 'TaskExecStarted') timeline.push(`exec-started ${ev.exec_id} ${ev.pid}`);
      else if (type === 'TaskExit') timeline.push(`exit ${ev.id} ${ev.pid} ${ev.exit_status}`);
      else timeline.push(`${topic} ${JSON.stringify(e)}`);
    },
  };
  // The constructor is private (Container.create runs real runc); reach it with a cast.
  const c = new (Container as unknown as new (...a: unknown[]) => Container)(CID, bundle, '', runc, deps);
  // Same ordering, same forced-release callback (Container's log line), on the fake clock.
  const onForced = (c.ordering as unknown as { onForcedRelease: (p: string[]) => void }).onForcedRelease;
  (c as unknown as { ordering: ExitOrdering }).ordering = new ExitOrdering(clock, onForced, INIT_HOLD_LIMIT_MS);
  const initIo = new FakeIO(clock);
  const since = reaper.mark();
  const sink = (c as unknown as { sink: unknown }).sink;
  const init = new InitProcess(CID, INIT_PID, bundle, { stdin: '', stdout: '', stderr: '', terminal: false },
    initIo as unknown as ProcessIO, runc, opts.killAllOnExit ?? false, sink as never, log, reaper.wait(INIT_PID, since));
  (c as unknown as { initProcess: InitProcess }).initProcess = init;
  const w = { bundle, clock, runc, reaper, logs, timeline, c, init, initIo };
  recordWait(w, init);
  return w;
}

/** Every Wait answer goes into the timeline, so it can be placed relative to the events. */
function recordWait(w: { timeline: string[] }, p: ShimProcess): void {
  void p.wait().then((e) => w.timeline.push(`wait ${p.id} ${e.status}`));
}

async function startInit(w: World): Promise<void> {
  const started = w.c.init.start();
  await flush();
  w.runc.starts.at(-1)!.resolve();
  await settled(started, 'start');
  await flush();
}

const SPEC = '{"args":["sh","-c","echo hi"],"cwd":"/"}';

async function addExec(w: World, execId: string): Promise<{ p: ExecProcess; io: FakeIO }> {
  const p = await w.c.addExec({
    id: CID, exec_id: execId, terminal: false, stdin: '', stdout: '', stderr: '',
    spec: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(SPEC) },
  });
  // addExec made a real ProcessIO (no paths: no pipes); swap in one whose drain we control.
  const io = new FakeIO(w.clock);
  (p as unknown as { io: FakeIO }).io = io;
  recordWait(w, p);
  return { p, io };
}

/** Start an exec and let `runc exec` return `pid`. */
async function startedExec(w: World, execId: string, pid: number): Promise<{ p: ExecProcess; io: FakeIO }> {
  const x = await addExec(w, execId);
  const s = w.c.startExec(x.p);
  await flush();
  w.runc.execs.at(-1)!.ret(pid);
  await settled(s, 'start');
  await flush();
  return x;
}

function exitsOf(timeline: string[]): string[] {
  return timeline.filter((e) => e.startsWith('exit '));
}

async function rejectsWith(t: Test, p: Promise<unknown> | (() => unknown), code: Code, msg?: RegExp): Promise<void> {
  try {
    await settled(Promise.resolve().then(() => (typeof p === 'function' ? p() : p)));
    t.fail(`expected ${Code[code]}`);
  } catch (err) {
    t.ok(err instanceof TtrpcError, `a TtrpcError (${String(err)})`);
    t.equal((err as TtrpcError).code, code, `code ${Code[code]}: ${(err as Error).message}`);
    if (msg) t.match((err as Error).message, msg);
  }
}

// ---------------------------------------------------------------------------------------------
// I1: no TaskExit before the start event.

t.test('I1: init exit while runc start is still running: TaskExit after TaskStart, never before', async (t) => {
  const w = world(t);
  const started = w.c.init.start();
  await flush();
  t.equal(w.init.state.kind, 'starting');
  w.reaper.exit(INIT_PID, 3);
  await flush();
  t.same(w.timeline, [], 'no TaskExit (and no Wait answer) while runc start runs');
  t.equal(w.init.state.kind, 'starting', 'the exit is held in starting');
  w.runc.starts[0].resolve();
  await settled(started, 'start');
  await flush();
  t.same(w.timeline, [`start ${CID} ${INIT_PID}`, `exit ${CID} ${INIT_PID} 3`, `wait ${CID} 3`]);
  t.equal(w.init.state.kind, 'stopped');
});

t.test('I1: exec exit before runc exec returned and before its pid is known: held, then published after TaskExecStarted', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await addExec(w, 'e1');
  const s = w.c.startExec(p);
  await flush();
  t.equal(w.runc.execs.length, 1, 'runc exec is running');
  // The exec's process already exited and was reaped; nobody has claimed pid 200 yet.
  w.reaper.exit(200, 7);
  await flush();
  t.same(w.timeline, [`start ${CID} ${INIT_PID}`], 'nothing for e1 yet');
  w.runc.execs[0].ret(200);
  await settled(s, 'start');
  await flush();
  t.same(w.timeline, [`start ${CID} ${INIT_PID}`, 'exec-started e1 200', 'exit e1 200 7', 'wait e1 7']);
  t.equal(p.pid, 200);
  t.equal(p.state.kind, 'stopped', 'stopped, not left running by the start that completed after the exit');
  t.same(w.reaper.claims.at(-1), { pid: 200, since: 0 }, 'claimed with the mark taken before runc exec');
});

t.test('exec: an exit of an earlier process with the same pid (before runc exec) is not this exec\'s', async (t) => {
  const w = world(t);
  await startInit(w);
  w.reaper.exit(200, 99); // some earlier pid 200, reaped and never claimed
  const { p } = await startedExec(w, 'e1', 200);
  t.same(w.timeline, [`start ${CID} ${INIT_PID}`, 'exec-started e1 200'], 'the stale exit is ignored');
  t.equal(p.state.kind, 'running');
  w.reaper.exit(200, 5);
  await flush();
  t.same(w.timeline.slice(2), ['exit e1 200 5', 'wait e1 5']);
});

t.test('I1: exec exit after runc exec returned, pid claimed, start event not yet out: held until TaskExecStarted', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await addExec(w, 'e1');
  const s = w.c.startExec(p);
  await flush();
  w.runc.execs[0].ret(201);
  // runc exec returned; the exit is reaped in the same turn, before start() resumes.
  w.reaper.exit(201, 0);
  await settled(s, 'start');
  await flush();
  t.same(w.timeline.slice(1), ['exec-started e1 201', 'exit e1 201 0', 'wait e1 0']);
  t.equal(p.state.kind, 'stopped');
});

// ---------------------------------------------------------------------------------------------
// Output drain.

t.test('exec exit while output still drains: Wait and TaskExit wait for the drain', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p, io } = await startedExec(w, 'e1', 200);
  io.flowing = new Deferred<void>();
  w.reaper.exit(200, 4);
  await flush();
  t.equal(p.state.kind, 'stopped', 'stopped at once');
  t.same(exitsOf(w.timeline), [], 'no TaskExit while output flows');
  t.notOk(w.timeline.includes('wait e1 4'), 'no Wait answer while output flows');
  io.flowing.resolve();
  await flush();
  t.same(w.timeline.slice(-2), ['exit e1 200 4', 'wait e1 4']);
});

t.test('exec exit while output never stops: the drain is bounded, then TaskExit and Wait follow', async (t) => {
  const w = world(t);
  await startInit(w);
  const { io } = await startedExec(w, 'e1', 200);
  io.flowing = new Deferred<void>(); // a background child holds the pipe forever
  w.reaper.exit(200, 4);
  await flush();
  t.equal(io.drainTimeouts.length, 1);
  const limit = io.drainTimeouts[0];
  t.ok(limit > 0 && limit <= 10_000, `the drain is bounded (${limit} ms)`);
  w.clock.advance(limit - 1);
  await flush();
  t.same(exitsOf(w.timeline), [], 'still draining 1 ms before the bound');
  w.clock.advance(1);
  await flush();
  t.same(w.timeline.slice(-2), ['exit e1 200 4', 'wait e1 4']);
  t.ok(w.logs.some(([level]) => level === 'warn'), 'a warning says output was cut off');
});

t.test('I2: init exit while an exec\'s output drains: the exec\'s TaskExit first, then the init\'s', async (t) => {
  const w = world(t);
  await startInit(w);
  const { io } = await startedExec(w, 'e1', 200);
  io.flowing = new Deferred<void>();
  w.reaper.exit(200, 137);
  w.reaper.exit(INIT_PID, 137);
  await flush();
  t.same(exitsOf(w.timeline), [], 'the init is held behind the draining exec');
  t.equal(w.c.ordering.holdingInit, true);
  io.flowing.resolve();
  await flush();
  t.same(exitsOf(w.timeline), ['exit e1 200 137', `exit ${CID} ${INIT_PID} 137`]);
  // Wait answers are promise continuations: they land after the synchronous publishes, each after its own.
  t.ok(w.timeline.indexOf('wait e1 137') > w.timeline.indexOf('exit e1 200 137'));
  t.ok(w.timeline.indexOf(`wait ${CID} 137`) > w.timeline.indexOf(`exit ${CID} ${INIT_PID} 137`));
});

t.test('init without its own pid namespace: kill --all after its exit, before its TaskExit', async (t) => {
  const w = world(t, { killAllOnExit: true });
  await startInit(w);
  w.reaper.exit(INIT_PID, 0);
  await flush();
  t.same(w.runc.calls, [`start ${CID}`, `kill ${CID} 9 --all`]);
  t.same(exitsOf(w.timeline), [`exit ${CID} ${INIT_PID} 0`]);
});

// ---------------------------------------------------------------------------------------------
// I2: every exec's TaskExit before the init's.

t.test('I2: init exit while execs start and run: the init\'s TaskExit is the last', async (t) => {
  const w = world(t);
  await startInit(w);
  const a = await startedExec(w, 'a', 201);
  const b = await addExec(w, 'b');
  const sb = w.c.startExec(b.p);
  await flush();
  w.reaper.exit(INIT_PID, 137);
  await flush();
  t.same(exitsOf(w.timeline), [], 'held: a runs, b is starting');
  w.reaper.exit(202, 137); // b's process, before runc exec returned
  w.runc.execs[1].ret(202);
  await settled(sb, 'start');
  await flush();
  t.same(exitsOf(w.timeline), ['exit b 202 137'], 'b out, init still held for a');
  w.reaper.exit(201, 137);
  await flush();
  t.same(exitsOf(w.timeline), ['exit b 202 137', 'exit a 201 137', `exit ${CID} ${INIT_PID} 137`]);
  t.equal(a.p.state.kind, 'stopped');
});

/** mulberry32. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('I2: init exit while 1..N execs start or run, random plans and delivery orders: the init is last', async (t) => {
  const SEEDS = 150;
  let bad = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const rnd = prng(seed);
    const shuffle = <T>(xs: T[]) => xs.map((x) => [rnd(), x] as const).sort((p, q) => p[0] - q[0]).map(([, x]) => x);
    const n = 1 + Math.floor(rnd() * 4);
    const w = world(t);
    await startInit(w);
    type Plan = { id: string; pid: number; running: boolean; outcome: 'ok' | 'fail' | 'early'; p?: ExecProcess; io?: FakeIO; start?: Promise<unknown>; execIdx?: number };
    const plans: Plan[] = [];
    for (let i = 0; i < n; i++) {
      const plan: Plan = { id: `x${i}`, pid: 300 + i, running: rnd() < 0.5, outcome: (['ok', 'fail', 'early'] as const)[Math.floor(rnd() * 3)] };
      if (plan.running) {
        Object.assign(plan, await startedExec(w, plan.id, plan.pid));
        if (rnd() < 0.3) plan.io!.flowing = new Deferred<void>();
      } else {
        Object.assign(plan, await addExec(w, plan.id));
        plan.start = w.c.startExec(plan.p!).catch((e: unknown) => e);
        plan.execIdx = w.runc.execs.length - 1;
        await flush();
      }
      plans.push(plan);
    }
    // The init exits (and the kernel kills every exec); then everything else happens in random order.
    w.reaper.exit(INIT_PID, 137);
    const steps: Array<() => void> = [];
    for (const plan of plans) {
      if (plan.running) {
        steps.push(() => w.reaper.exit(plan.pid, 137));
        if (plan.io!.flowing) steps.push(() => plan.io!.flowing!.resolve());
      } else if (plan.outcome === 'fail') {
        steps.push(() => w.runc.execs[plan.execIdx!].fail('container not running'));
      } else if (plan.outcome === 'early') {
        // Exit reaped before runc exec returns.
        steps.push(() => { w.reaper.exit(plan.pid, 137); w.runc.execs[plan.execIdx!].ret(plan.pid); });
      } else {
        // runc exec returns and the exit is reaped, in either order.
        steps.push(() => w.runc.execs[plan.execIdx!].ret(plan.pid));
        steps.push(() => w.reaper.exit(plan.pid, 137));
      }
    }
    for (const step of shuffle(steps)) {
      step();
      if (rnd() < 0.5) await flush();
    }
    for (let i = 0; i < 5; i++) await flush();
    // Checks.
    const tl = w.timeline;
    const problems: string[] = [];
    const exits = exitsOf(tl);
    if (exits.at(-1) !== `exit ${CID} ${INIT_PID} 137`) problems.push(`init's TaskExit is not the last one: ${exits}`);
    for (const plan of plans) {
      const started = tl.indexOf(`exec-started ${plan.id} ${plan.pid}`);
      const exited = tl.indexOf(`exit ${plan.id} ${plan.pid} 137`);
      const waited = tl.indexOf(`wait ${plan.id} 137`);
      const failed = !plan.running && plan.outcome === 'fail';
      if (failed) {
        if (started >= 0 || exited >= 0) problems.push(`${plan.id} failed to start but has events`);
        continue;
      }
      if (started < 0 || exited < 0) problems.push(`${plan.id}: start ${started}, exit ${exited}`);
      if (exited < started) problems.push(`${plan.id}: TaskExit before TaskExecStarted`);
      if (waited < exited) problems.push(`${plan.id}: Wait answered before its TaskExit`);
    }
    const perProcess = new Map<string, number>();
    for (const e of exits) perProcess.set(e.split(' ')[1], (perProcess.get(e.split(' ')[1]) ?? 0) + 1);
    for (const [id, k] of perProcess) if (k !== 1) problems.push(`${id}: ${k} TaskExits`);
    if (w.c.ordering.holdingInit) problems.push('init still held');
    if (fs.readdirSync(w.bundle).length) problems.push(`bundle not clean: ${fs.readdirSync(w.bundle)}`);
    if (problems.length) {
      bad++;
      if (bad <= 3) t.fail(`seed ${seed}: ${problems.join('; ')}`, { plans: plans.map(({ id, running, outcome }) => ({ id, running, outcome })), timeline: tl });
    }
  }
  t.equal(bad, 0, `${SEEDS} plans, the init's TaskExit always last`);
});

t.test('I2: an exec start that fails releases a held init exit', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await addExec(w, 'e1');
  const s = w.c.startExec(p);
  await flush();
  w.reaper.exit(INIT_PID, 137);
  await flush();
  t.same(exitsOf(w.timeline), [], 'held while e1 is starting');
  t.equal(w.c.ordering.holdingInit, true);
  w.runc.execs[0].fail('cannot exec in a stopped container');
  await rejectsWith(t, s, Code.FailedPrecondition, /OCI runtime exec failed/);
  await flush();
  t.same(w.timeline.slice(1), [`exit ${CID} ${INIT_PID} 137`, `wait ${CID} 137`], 'no event for e1, the init follows');
  t.same(w.c.ordering.pending, { starting: 0, running: [] });
  t.equal(p.state.kind, 'created');
});

t.test('I2: an exec that never reports its exit: the init\'s TaskExit is forced out at the hold limit', async (t) => {
  const w = world(t);
  await startInit(w);
  await startedExec(w, 'escaped', 200);
  w.reaper.exit(INIT_PID, 0);
  await flush();
  w.clock.advance(INIT_HOLD_LIMIT_MS - 1);
  await flush();
  t.same(exitsOf(w.timeline), []);
  w.clock.advance(1);
  await flush();
  t.same(exitsOf(w.timeline), [`exit ${CID} ${INIT_PID} 0`]);
  const line = w.logs.find(([level]) => level === 'error');
  t.match(line?.[1], { id: CID, pending: ['escaped'] }, 'logged with the pending exec');
});

// ---------------------------------------------------------------------------------------------
// Exactly one TaskExit per process; Wait agrees with the event.

t.test('I3: exactly one TaskExit per process, and every Wait resolves with the event\'s status', async (t) => {
  const w = world(t);
  const waits: Array<Promise<number>> = [];
  const st = (p: ShimProcess) => waits.push(p.wait().then((e) => e.status));
  st(w.init);
  await startInit(w);
  const { p } = await startedExec(w, 'e1', 200);
  st(p);
  st(p);
  w.reaper.exit(200, 12);
  w.reaper.exit(200, 13); // a later process with the same pid: not e1's
  await flush();
  st(p);
  w.reaper.exit(INIT_PID, 21);
  await flush();
  st(w.init);
  t.same(await settled(Promise.all(waits), 'Wait'), [21, 12, 12, 12, 21]);
  t.same(exitsOf(w.timeline), ['exit e1 200 12', `exit ${CID} ${INIT_PID} 21`]);
  t.same((await settled(w.c.deleteExec(p))).status, 12, 'Delete reports the same status');
  t.same((await settled(w.c.delete())).exit.status, 21);
  t.same(exitsOf(w.timeline), ['exit e1 200 12', `exit ${CID} ${INIT_PID} 21`], 'delete publishes no second TaskExit');
});

t.test('a container deleted before start: no TaskStart, one TaskExit (as the Go shim); Delete and Wait report the kill', async (t) => {
  const w = world(t);
  const del = w.c.delete();
  await flush();
  t.same(w.runc.calls, [`delete ${CID} --force`], 'runc delete --force kills the created init');
  w.reaper.exit(INIT_PID, 137);
  t.equal((await settled(del, 'Delete')).exit.status, 137, 'the real status, collected from the reaper');
  await flush();
  t.same(w.timeline, [`exit ${CID} ${INIT_PID} 137`, `wait ${CID} 137`], 'an init that never started still reports its exit, once, before Wait');
  t.equal(w.init.state.kind, 'deleted');
});

/**
 * Delete of the container while the init's TaskExit is held by the ordering. Delete may be refused
 * (the exit is not out yet) or wait for the TaskExit; it must not answer first (the service
 * publishes TaskDelete when it answers), and the init's Wait must not answer before its TaskExit.
 * Fails at the time of writing: ShimProcess.exitHandled (process/lifecycle.ts:105-111) settles as
 * soon as sink.exited() returns, though the ordering may still hold the TaskExit, so
 * InitProcess.delete (process/init.ts:64, 84) runs runc delete and answers Wait (and Delete) first.
 */
async function deleteWhileHeld(t: Test, execExit: 'draining' | 'not reaped yet'): Promise<void> {
  const w = world(t);
  await startInit(w);
  const { io } = await startedExec(w, 'e1', 200);
  if (execExit === 'draining') {
    io.flowing = new Deferred<void>(); // e1 exited, its output still flows
    w.reaper.exit(200, 137);
  }
  w.reaper.exit(INIT_PID, 137);
  await flush();
  t.equal(w.init.state.kind, 'stopped');
  t.equal(w.c.ordering.holdingInit, true, 'the init\'s TaskExit is held for e1');
  let outcome = 'pending';
  const del = w.c.delete().then(
    () => { outcome = 'deleted'; w.timeline.push('deleted'); },
    (e: unknown) => { outcome = String(e); w.timeline.push('refused'); },
  );
  await flush();
  t.not(outcome, 'deleted', `Delete must not answer while the init's TaskExit is held: ${w.timeline.join(' | ')}`);
  t.notOk(w.timeline.includes(`wait ${CID} 137`), 'the init\'s Wait must not answer before its TaskExit');
  // Let e1 finish.
  if (execExit === 'draining') io.flowing!.resolve();
  else w.reaper.exit(200, 137);
  await settled(del, 'Delete');
  await flush();
  t.same(exitsOf(w.timeline), ['exit e1 200 137', `exit ${CID} ${INIT_PID} 137`]);
  const iExit = w.timeline.indexOf(`exit ${CID} ${INIT_PID} 137`);
  t.ok(w.timeline.indexOf(`wait ${CID} 137`) > iExit, `init Wait after its TaskExit: ${w.timeline.join(' | ')}`);
  if (outcome === 'deleted') t.ok(w.timeline.indexOf('deleted') > iExit, 'Delete answered after the init\'s TaskExit');
}

t.test('Delete while the init\'s TaskExit is held by an exec whose output drains', (t) => deleteWhileHeld(t, 'draining'));
t.test('Delete while the init\'s TaskExit is held by an exec not reaped yet', (t) => deleteWhileHeld(t, 'not reaped yet'));

// ---------------------------------------------------------------------------------------------
// Refusals.

t.test('start twice is refused', async (t) => {
  const w = world(t);
  const s1 = w.c.init.start();
  await rejectsWith(t, w.c.init.start(), Code.FailedPrecondition, /already starting/);
  w.runc.starts[0].resolve();
  await s1;
  await rejectsWith(t, w.c.init.start(), Code.FailedPrecondition, /running/);
  t.same(w.runc.calls, [`start ${CID}`], 'runc start ran once');

  const { p } = await addExec(w, 'e1');
  const e1 = w.c.startExec(p);
  await rejectsWith(t, w.c.startExec(p), Code.FailedPrecondition, /already starting/);
  t.same(w.c.ordering.pending, { starting: 1, running: [] }, 'the refused start is not counted');
  await flush();
  w.runc.execs[0].ret(200);
  await settled(e1, 'start');
  await rejectsWith(t, w.c.startExec(p), Code.FailedPrecondition, /running/);
  t.same(w.c.ordering.pending, { starting: 0, running: ['e1'] });
  t.equal(w.runc.execs.length, 1, 'runc exec ran once');
});

t.test('delete of a starting or running process is refused', async (t) => {
  const w = world(t);
  const s = w.c.init.start();
  await rejectsWith(t, w.c.delete(), Code.FailedPrecondition, /starting/);
  w.runc.starts[0].resolve();
  await settled(s, 'start');
  await rejectsWith(t, w.c.delete(), Code.FailedPrecondition, /running/);
  const { p } = await addExec(w, 'e1');
  const se = w.c.startExec(p);
  await rejectsWith(t, w.c.deleteExec(p), Code.FailedPrecondition, /starting/);
  await flush();
  w.runc.execs[0].ret(200);
  await settled(se, 'start');
  await rejectsWith(t, w.c.deleteExec(p), Code.FailedPrecondition, /running/);
  t.equal(w.c.execs.get('e1'), p, 'still registered');
  t.notOk(w.runc.calls.some((c) => c.startsWith('delete')), 'runc delete never ran');
});

t.test('kill after exit is refused with NotFound', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await startedExec(w, 'e1', 200);
  w.reaper.exit(200, 0);
  await flush();
  await rejectsWith(t, p.kill(15), Code.NotFound, /already finished/);
  w.reaper.exit(INIT_PID, 0);
  await flush();
  await rejectsWith(t, w.c.init.kill(15, false), Code.NotFound, /already finished/);
  t.notOk(w.runc.calls.some((c) => c.startsWith('kill')), 'runc kill never ran');
});

t.test('exec into a stopped container is refused, and holds nothing', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await addExec(w, 'late'); // added while the init ran
  w.reaper.exit(INIT_PID, 0);
  await flush();
  t.same(exitsOf(w.timeline), [`exit ${CID} ${INIT_PID} 0`], 'an exec that is only added does not hold the init');
  await rejectsWith(t, addExec(w, 'e2'), Code.FailedPrecondition, /stopped container/);
  await rejectsWith(t, w.c.startExec(p), Code.FailedPrecondition, /stopped container/);
  t.equal(w.runc.execs.length, 0, 'runc exec never ran');
  t.same(w.c.ordering.pending, { starting: 0, running: [] });
  t.same(fs.readdirSync(w.bundle), []);
});

// ---------------------------------------------------------------------------------------------
// Exec ids and per-exec files.

t.test('an exec id can be reused after deleteExec, and the new one is ordered like any other', async (t) => {
  const w = world(t);
  await startInit(w);
  const first = await startedExec(w, 'x', 200);
  await rejectsWith(t, addExec(w, 'x'), Code.AlreadyExists);
  w.reaper.exit(200, 1);
  await flush();
  t.same((await settled(w.c.deleteExec(first.p))).status, 1);
  t.notOk(w.c.execs.has('x'));
  const second = await startedExec(w, 'x', 201);
  t.not(second.p, first.p);
  t.equal(second.p.state.kind, 'running');
  w.reaper.exit(INIT_PID, 137);
  await flush();
  t.equal(w.c.ordering.holdingInit, true, 'the reused id holds the init like a new one');
  w.reaper.exit(201, 137);
  await flush();
  t.same(w.timeline.filter((e) => !e.startsWith('wait')), [
    `start ${CID} ${INIT_PID}`,
    'exec-started x 200', 'exit x 200 1',
    'exec-started x 201', 'exit x 201 137',
    `exit ${CID} ${INIT_PID} 137`,
  ]);
});

t.test('per-exec files live in the bundle only while runc exec runs', async (t) => {
  const w = world(t);
  await startInit(w);
  const { p } = await addExec(w, '../odd id/'); // exec ids are arbitrary strings
  const s = w.c.startExec(p);
  await flush();
  const call = w.runc.execs[0];
  t.equal(call.id, CID);
  t.same(JSON.parse(call.spec), { ...JSON.parse(SPEC), terminal: false }, 'runc reads the spec containerd sent, terminal as the request says');
  t.equal(path.dirname(call.o.processFile), w.bundle, 'process file in the bundle');
  t.equal(path.dirname(call.o.pidFile), w.bundle, 'pid file in the bundle');
  t.match(path.basename(call.o.processFile), /^\.exec-.*\.json$/);
  t.match(path.basename(call.o.pidFile), /^\.exec-.*\.pid$/);
  t.equal(fs.readdirSync(w.bundle).length, 1, 'only the process file while runc runs');
  call.ret(200);
  await settled(s, 'start');
  t.same(fs.readdirSync(w.bundle), [], 'both removed once started');
  t.equal(p.pid, 200);
});

t.test('the exec spec runc reads has the request\'s terminal, whatever containerd\'s spec said (as the Go shim)', async (t) => {
  const spec = (o: object) => Buffer.from(JSON.stringify(o));
  const base = { args: ['sh'], cwd: '/', env: ['A=1'], user: { uid: 0, gid: 0 } };
  for (const request of [true, false]) {
    for (const inSpec of [true, false, undefined]) {
      const out = JSON.parse(execProcessSpec(spec(inSpec === undefined ? base : { ...base, terminal: inSpec }), request).toString());
      t.same(out, { ...base, terminal: request }, `request ${request}, spec ${inSpec}: terminal ${request}, the rest kept`);
    }
  }
  // Fields runcts does not know are passed on (runc may know them).
  t.same(JSON.parse(execProcessSpec(spec({ ...base, ioPriority: { class: 'IOPRIO_CLASS_IDLE' } }), false).toString()).ioPriority, { class: 'IOPRIO_CLASS_IDLE' });
  for (const bad of ['{"args":', '[]', 'null', '"sh"']) {
    try {
      execProcessSpec(Buffer.from(bad), false);
      t.fail(`${bad}: refused`);
    } catch (err) {
      t.equal((err as TtrpcError).code, Code.InvalidArgument, `${bad}: InvalidArgument (${(err as Error).message})`);
    }
  }
  // Refused at Exec, before anything is made for it.
  const w = world(t);
  await startInit(w);
  await rejectsWith(t, w.c.addExec({
    id: CID, exec_id: 'bad', terminal: false, stdin: '', stdout: '', stderr: '',
    spec: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{"args":') },
  }), Code.InvalidArgument, /not valid JSON/);
  t.notOk(w.c.execs.has('bad'), 'no exec registered');
});

t.test('per-exec files are removed when runc exec fails, and when its pid file is bad', async (t) => {
  const w = world(t);
  await startInit(w);
  const a = await addExec(w, 'a');
  const sa = w.c.startExec(a.p);
  await flush();
  w.runc.execs[0].fail('exec failed: no such file', 201); // even with a pid file written
  await rejectsWith(t, sa, Code.Unknown, /OCI runtime exec failed/);
  t.same(fs.readdirSync(w.bundle), [], 'clean after a failed runc exec');

  const b = await addExec(w, 'b');
  const sb = w.c.startExec(b.p);
  await flush();
  w.runc.execs[1].ret('garbage');
  await rejectsWith(t, sb, Code.Unknown, /invalid pid/);
  t.same(fs.readdirSync(w.bundle), [], 'clean after an unreadable pid');

  t.same(w.c.ordering.pending, { starting: 0, running: [] }, 'both failures undone in the ordering');
  t.equal(a.p.state.kind, 'created');
  t.same(exitsOf(w.timeline), []);
  // Two runs of one exec id never share files: names carry a sequence number.
  t.not(w.runc.execs[0].o.processFile, w.runc.execs[1].o.processFile);
});

// ---------------------------------------------------------------------------------------------
// Pause / resume: the freeze is a state of the init; an exit during `runc pause` is held, an exit
// while frozen thaws what is left before the rest of the exit handling.

t.test('pause then resume: pausing while runc pause runs, paused after, running after resume', async (t) => {
  const w = world(t);
  await startInit(w);
  const paused = w.init.pause();
  await flush();
  t.equal(w.init.state.kind, 'pausing');
  await rejectsWith(t, () => w.init.pause(), Code.FailedPrecondition, /already pausing/);
  w.runc.pauses[0].resolve();
  await settled(paused, 'pause');
  t.equal(w.init.state.kind, 'paused');
  await rejectsWith(t, () => w.c.addExec({ id: CID, exec_id: 'x', terminal: false, stdin: '', stdout: '', stderr: '', spec: { type_url: '', value: Buffer.from(SPEC) } }), Code.FailedPrecondition, /paused/);
  await rejectsWith(t, () => w.init.delete(), Code.FailedPrecondition, /paused/);
  await settled(w.init.resume(), 'resume');
  t.equal(w.init.state.kind, 'running');
  t.same(w.runc.calls.filter((c) => /pause|resume/.test(c)), [`pause ${CID}`, `resume ${CID}`]);
});

t.test('pause that runc refuses: back to running, the error carries runc\'s words', async (t) => {
  const w = world(t);
  await startInit(w);
  const paused = w.init.pause();
  await flush();
  w.runc.pauses[0].reject(new RuncError('pause', 1, 'container not running'));
  await rejectsWith(t, paused, Code.NotFound, /OCI runtime pause failed: container not running/);
  t.equal(w.init.state.kind, 'running');
});

t.test('init exit during runc pause: held until the freeze settled, then thawed, then TaskExit', async (t) => {
  const w = world(t);
  await startInit(w);
  const paused = w.init.pause();
  await flush();
  w.reaper.exit(INIT_PID, 9);
  await flush();
  t.equal(w.init.state.kind, 'pausing', 'the exit is held while runc pause runs');
  t.same(exitsOf(w.timeline), [], 'no TaskExit yet');
  w.runc.pauses[0].resolve();
  await settled(paused, 'pause');
  await flush();
  t.equal(w.init.state.kind, 'stopped');
  t.same(exitsOf(w.timeline), [`exit ${CID} ${INIT_PID} 9`]);
  t.same(w.runc.calls.filter((c) => /pause|resume/.test(c)), [`pause ${CID}`, `resume ${CID}`], 'thawed after the exit');
});

t.test('init exit while paused: resume (thaw), then kill --all, then TaskExit; resume afterwards is refused', async (t) => {
  const w = world(t, { killAllOnExit: true });
  await startInit(w);
  const paused = w.init.pause();
  await flush();
  w.runc.pauses[0].resolve();
  await settled(paused, 'pause');
  w.reaper.exit(INIT_PID, 137);
  await flush();
  const tail = w.runc.calls.slice(w.runc.calls.indexOf(`pause ${CID}`) + 1);
  t.same(tail, [`resume ${CID}`, `kill ${CID} 9 --all`], 'thaw before kill --all');
  t.same(exitsOf(w.timeline), [`exit ${CID} ${INIT_PID} 137`]);
  await rejectsWith(t, () => w.init.resume(), Code.FailedPrecondition, /stopped/);
});

t.test('pause, checkpoint of a created init are refused; update of a created init is allowed', async (t) => {
  const w = world(t);
  await rejectsWith(t, () => w.init.pause(), Code.FailedPrecondition, /not started/);
  await rejectsWith(t, () => w.init.resume(), Code.FailedPrecondition, /not paused/);
  await rejectsWith(t, () => w.init.checkpoint({ imagePath: '/x', workPath: '/y', leaveRunning: true }), Code.FailedPrecondition, /not started/);
  await settled(w.init.update(Buffer.from('{"memory":{"limit":1048576}}')), 'update');
  t.same(w.runc.calls.filter((c) => c.startsWith('update')), [`update ${CID} {"memory":{"limit":1048576}}`], 'runc got the resources');
  t.same(fs.readdirSync(w.bundle).filter((f) => f.startsWith('.update-')), [], 'the resources file is gone');
});
