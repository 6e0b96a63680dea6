// Exit-ordering invariants (DESIGN lesson 3, seed "002") checked on the task events containerd
// forwards, and the scenario drivers that provoke the races. Used by
// test/integration/exit-ordering.test.ts and the stress entry test/integration/stress-ordering.ts.
// See docs/exit-ordering-tests.md.
//
// Per container, on the events in the order containerd delivered them:
//   1. no /tasks/exit of a process before its /tasks/start (init) or /tasks/exec-started (exec);
//   2. every exec's /tasks/exit before the init's /tasks/exit;
//   3. exactly one /tasks/exit per started process, with the pid of its start event and the
//      status the caller got (ctr's exit code, Wait, Delete).
import * as fs from 'node:fs';
import type { Test } from 'tap';
import type { Containerd } from './containerd';
import { BUSYBOX_IMAGE } from './fixtures';
import { CtrEvent, eventContainerId, EventStream } from './events';
import { describeResult, RunResult, sleep } from './proc';

// ---------------------------------------------------------------------------------------------
// The checker: a pure function over an event list.

/** What the checker needs of an event (CtrEvent fits). */
export interface TaskEventLike {
  topic: string;
  /** The event body as `ctr events` prints it (Go JSON: zero values are omitted). */
  payload?: Record<string, unknown> | undefined;
  raw?: string;
  /** When the shim published it (`ctr events`: "2026-11-22 11:03:36.504480689 +0000 UTC"). */
  timestamp?: string;
}

/** What a caller saw of one process it tried to start. */
export interface CallerOutcome {
  container: string;
  /** The exec id; undefined (or '') for the container's init. */
  exec?: string;
  /**
   * The caller's start call succeeded (ctr run / ctr task start / ctr task exec got past Start),
   * so the shim must have published the process's start event.
   */
  started: boolean;
  /** The exit status the caller got for it (ctr's exit code, Wait, or Delete), if any. */
  status?: number;
}

export type ViolationKind =
  /** 1: the exit was published before the process's start event. */
  | 'exit-before-start'
  /** 1: an exit for a process whose start event never came (though it was started). */
  | 'exit-without-start'
  /** 2: an exec's exit published after the init's exit. */
  | 'exec-exit-after-init-exit'
  /** 3: a second exit for one process. */
  | 'duplicate-exit'
  /** 3: a started process without an exit (or a created init deleted without one). */
  | 'missing-exit'
  /** 3: the exit's pid is not the pid of the start event. */
  | 'pid-mismatch'
  /** 3: the exit's exit_status is not the status the caller got. */
  | 'status-mismatch'
  /** 3: a second start event for a process that has not exited. */
  | 'duplicate-start'
  /** 3: the caller started the process, but no start event (nor exit) was seen. */
  | 'missing-start'
  /** 3: the init's /tasks/delete disagrees with its /tasks/exit (pid, status) or precedes it. */
  | 'delete-mismatch';

export const VIOLATION_INVARIANT: Readonly<Record<ViolationKind, 1 | 2 | 3>> = {
  'exit-before-start': 1,
  'exit-without-start': 1,
  'exec-exit-after-init-exit': 2,
  'duplicate-exit': 3,
  'missing-exit': 3,
  'pid-mismatch': 3,
  'status-mismatch': 3,
  'duplicate-start': 3,
  'missing-start': 3,
  'delete-mismatch': 3,
};

export interface Violation {
  kind: ViolationKind;
  invariant: 1 | 2 | 3;
  container: string;
  /** The container id for the init, the exec id for an exec. */
  process: string;
  message: string;
  /** The events involved (raw lines when known). */
  events: string[];
}

export interface OrderingReport {
  violations: Violation[];
  /** Processes with a start event (/tasks/start, /tasks/exec-started). */
  started: number;
  /** Processes with both a start and an exit event: the lifecycles actually checked. */
  lifecycles: number;
  inits: number;
  execs: number;
  /** Inits that exited without ever being started (killed while created): not lifecycles. */
  unstartedInits: number;
  containers: number;
  /** Task events considered. */
  events: number;
  /**
   * Races seen (not violations): lifecycles whose exited_at is earlier than their start
   * event's publication, i.e. the process exited before its start was published and the exit
   * had to wait for it ...
   */
  exitedBeforeStartPublished: number;
  /** ... and exec exits published after the init had already exited (its exited_at). */
  execExitsPublishedAfterInitExited: number;
}

/**
 * A `ctr events` timestamp or an exited_at, as ms since the epoch (fractions kept). ctr 1.x
 * prints exited_at as RFC 3339, ctr 2.x as a protobuf Timestamp object {seconds, nanos}.
 */
export function parseEventTime(s: unknown): number | undefined {
  if (s !== null && typeof s === 'object' && 'seconds' in s) {
    const { seconds, nanos } = s as { seconds: unknown; nanos?: unknown };
    const sec = Number(seconds);
    return Number.isFinite(sec) ? sec * 1000 + (Number(nanos ?? 0) || 0) / 1e6 : undefined;
  }
  if (typeof s !== 'string') return undefined;
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?/.exec(s);
  if (!m) return undefined;
  let off = 'Z';
  if (m[4] && m[4] !== 'Z') off = m[4].includes(':') ? m[4] : `${m[4].slice(0, 3)}:${m[4].slice(3)}`;
  const base = Date.parse(`${m[1]}T${m[2]}${off}`);
  if (Number.isNaN(base)) return undefined;
  return base + (m[3] ? Number(`0.${m[3]}`) * 1000 : 0);
}

export function violationsByInvariant(vs: readonly Violation[]): Record<1 | 2 | 3, Violation[]> {
  return { 1: vs.filter(v => v.invariant === 1), 2: vs.filter(v => v.invariant === 2), 3: vs.filter(v => v.invariant === 3) };
}

/** "kind xN, kind xM" for messages. */
export function summarizeKinds(vs: readonly Violation[]): string {
  const n = new Map<string, number>();
  for (const v of vs) n.set(v.kind, (n.get(v.kind) ?? 0) + 1);
  return [...n].map(([k, c]) => `${k} x${c}`).join(', ') || 'none';
}

function num(p: Record<string, unknown> | undefined, k: string): number {
  const v = p?.[k];
  return typeof v === 'number' ? v : 0; // Go JSON omits zero values
}

function str(p: Record<string, unknown> | undefined, k: string): string {
  const v = p?.[k];
  return typeof v === 'string' ? v : '';
}

function show(e: TaskEventLike): string {
  return e.raw ?? `${e.topic} ${JSON.stringify(e.payload ?? {})}`;
}

interface ExitSeen {
  idx: number;
  pid: number;
  status: number;
  ev: TaskEventLike;
}

interface Generation {
  proc: string;
  pid: number;
  startIdx: number;
  start: TaskEventLike;
  exit?: ExitSeen;
}

interface Orphan extends ExitSeen {
  proc: string;
  matched: boolean;
}

/**
 * Check the exit-ordering invariants on events (any order of containers; each container's
 * events in delivery order) against what callers saw. Container ids must not be reused within
 * one list; exec ids may be (one after the other: a new exec-started begins a new process).
 */
export function checkExitOrdering(events: readonly TaskEventLike[], outcomes: readonly CallerOutcome[] = []): OrderingReport {
  const report: OrderingReport = {
    violations: [], started: 0, lifecycles: 0, inits: 0, execs: 0, unstartedInits: 0, containers: 0, events: 0,
    exitedBeforeStartPublished: 0, execExitsPublishedAfterInitExited: 0,
  };
  const byContainer = new Map<string, Array<{ idx: number; e: TaskEventLike }>>();
  for (let idx = 0; idx < events.length; idx++) {
    const e = events[idx]!;
    if (!e.topic.startsWith('/tasks/')) continue;
    const cid = str(e.payload, 'container_id');
    if (!cid) continue;
    report.events++;
    let l = byContainer.get(cid);
    if (!l) byContainer.set(cid, (l = []));
    l.push({ idx, e });
  }
  const outcomesBy = new Map<string, CallerOutcome[]>();
  for (const o of outcomes) {
    let l = outcomesBy.get(o.container);
    if (!l) outcomesBy.set(o.container, (l = []));
    l.push(o);
    if (!byContainer.has(o.container)) byContainer.set(o.container, []);
  }
  for (const [cid, list] of byContainer) {
    report.containers++;
    checkContainer(cid, list, outcomesBy.get(cid) ?? [], report);
  }
  return report;
}

function checkContainer(cid: string, list: Array<{ idx: number; e: TaskEventLike }>, outcomes: CallerOutcome[], report: OrderingReport): void {
  const gens = new Map<string, Generation[]>();
  const orphans: Orphan[] = [];
  const deletes: Array<{ idx: number; e: TaskEventLike }> = [];
  let createPid: number | undefined;
  let initExit: { idx: number; ev: TaskEventLike } | undefined;
  const add = (kind: ViolationKind, proc: string, message: string, evs: TaskEventLike[]): void => {
    report.violations.push({ kind, invariant: VIOLATION_INVARIANT[kind], container: cid, process: proc, message, events: evs.map(show) });
  };
  const what = (proc: string): string => (proc === cid ? `init of ${cid}` : `exec ${proc} of ${cid}`);

  const onStart = (proc: string, pid: number, idx: number, e: TaskEventLike): void => {
    let l = gens.get(proc);
    if (!l) gens.set(proc, (l = []));
    const last = l[l.length - 1];
    if (last && !last.exit) {
      add('duplicate-start', proc, `${what(proc)}: a second start event (pid ${pid}) before the exit of pid ${last.pid}`, [last.start, e]);
      return;
    }
    const g: Generation = { proc, pid, startIdx: idx, start: e };
    const o = orphans.find(o => !o.matched && o.proc === proc && o.pid === pid);
    if (o) {
      o.matched = true;
      g.exit = o;
      add('exit-before-start', proc, `${what(proc)}: /tasks/exit (pid ${pid}) published before its ${e.topic}`, [o.ev, e]);
    }
    l.push(g);
  };

  const onExit = (proc: string, pid: number, status: number, idx: number, e: TaskEventLike): void => {
    const isInit = proc === cid;
    if (!isInit && initExit) {
      add('exec-exit-after-init-exit', proc, `${what(proc)}: exit (pid ${pid}) published after the init's exit`, [initExit.ev, e]);
    }
    const seen: ExitSeen = { idx, pid, status, ev: e };
    const l = gens.get(proc);
    const last = l?.[l.length - 1];
    if (last && !last.exit) {
      if (last.pid !== pid) add('pid-mismatch', proc, `${what(proc)}: exit pid ${pid}, start pid ${last.pid}`, [last.start, e]);
      last.exit = seen;
    } else if (last?.exit && last.exit.pid === pid) {
      add('duplicate-exit', proc, `${what(proc)}: a second exit for pid ${pid}`, [last.exit.ev, e]);
    } else {
      const dup = orphans.find(o => o.proc === proc && o.pid === pid);
      if (dup) add('duplicate-exit', proc, `${what(proc)}: a second exit for pid ${pid}`, [dup.ev, e]);
      else orphans.push({ ...seen, proc, matched: false });
    }
    if (isInit && !initExit) initExit = { idx, ev: e };
  };

  for (const { idx, e } of list) {
    const p = e.payload;
    switch (e.topic) {
      case '/tasks/create':
        createPid = num(p, 'pid');
        break;
      case '/tasks/start':
        onStart(cid, num(p, 'pid'), idx, e);
        break;
      case '/tasks/exec-started':
        onStart(str(p, 'exec_id'), num(p, 'pid'), idx, e);
        break;
      case '/tasks/exit':
        onExit(str(p, 'id') || cid, num(p, 'pid'), num(p, 'exit_status'), idx, e);
        break;
      case '/tasks/delete': {
        const id = str(p, 'id');
        if (!id || id === cid) deletes.push({ idx, e });
        break;
      }
      default:
        break;
    }
  }

  const initStartedByCaller = outcomes.some(o => !o.exec && o.started);
  let initExitSeen: ExitSeen | undefined;
  for (const o of orphans) {
    if (o.matched) continue;
    if (o.proc === cid) {
      initExitSeen ??= o;
      if (!gens.has(cid) && (createPid === undefined || createPid === o.pid) && !initStartedByCaller) {
        report.unstartedInits++; // killed while created: never started, so no start event is due
        continue;
      }
    }
    add('exit-without-start', o.proc, `${what(o.proc)}: exit (pid ${o.pid}) without a start event`, [o.ev]);
  }
  for (const [proc, l] of gens) {
    for (const g of l) {
      report.started++;
      if (!g.exit) {
        add('missing-exit', proc, `${what(proc)}: started (pid ${g.pid}) but no exit`, [g.start]);
        continue;
      }
      report.lifecycles++;
      if (proc === cid) report.inits++;
      else report.execs++;
      if (proc === cid) initExitSeen ??= g.exit;
      const exitedAt = parseEventTime(g.exit.ev.payload?.exited_at);
      const startPublished = parseEventTime(g.start.timestamp);
      if (exitedAt !== undefined && startPublished !== undefined && exitedAt < startPublished) report.exitedBeforeStartPublished++;
    }
  }
  const initExitedAt = parseEventTime(initExitSeen?.ev.payload?.exited_at);
  if (initExitedAt !== undefined) {
    for (const [proc, l] of gens) {
      if (proc === cid) continue;
      for (const g of l) {
        const published = parseEventTime(g.exit?.ev.timestamp);
        if (published !== undefined && published > initExitedAt) report.execExitsPublishedAfterInitExited++;
      }
    }
  }
  for (const d of deletes) {
    if (!initExitSeen || initExitSeen.idx > d.idx) {
      if (!gens.has(cid) && !initExitSeen) {
        // Created, never started, gone: its runc init still was a process with a pid, and the
        // Go shim publishes its /tasks/exit (status 137 when killed).
        add('missing-exit', cid, `init of ${cid} (created${createPid ? ` with pid ${createPid}` : ''}, never started): /tasks/delete without any /tasks/exit`, [d.e]);
      } else {
        add('delete-mismatch', cid, `init of ${cid}: /tasks/delete before the init's /tasks/exit`, [d.e]);
      }
      continue;
    }
    const pid = num(d.e.payload, 'pid');
    const status = num(d.e.payload, 'exit_status');
    if (pid !== initExitSeen.pid || status !== initExitSeen.status) {
      add('delete-mismatch', cid, `init of ${cid}: /tasks/delete says pid ${pid} status ${status}, /tasks/exit pid ${initExitSeen.pid} status ${initExitSeen.status}`, [initExitSeen.ev, d.e]);
    }
  }

  // Caller outcomes: the k-th started outcome of a process is its k-th start event.
  const perProc = new Map<string, CallerOutcome[]>();
  for (const o of outcomes) {
    const proc = o.exec || cid;
    let l = perProc.get(proc);
    if (!l) perProc.set(proc, (l = []));
    l.push(o);
  }
  for (const [proc, os] of perProc) {
    const l = gens.get(proc) ?? [];
    let k = 0;
    for (const o of os) {
      if (!o.started) {
        if (proc === cid && o.status !== undefined && initExitSeen && initExitSeen.status !== o.status) {
          add('status-mismatch', proc, `${what(proc)}: the caller got status ${o.status}, /tasks/exit says ${initExitSeen.status}`, [initExitSeen.ev]);
        }
        continue;
      }
      const g = l[k++];
      if (!g) {
        if (!orphans.some(x => x.proc === proc && !x.matched)) add('missing-start', proc, `${what(proc)}: the caller started it, but no start event was seen`, []);
        continue;
      }
      if (o.status !== undefined && g.exit && g.exit.status !== o.status) {
        add('status-mismatch', proc, `${what(proc)}: the caller got status ${o.status}, /tasks/exit says ${g.exit.status}`, [g.exit.ev]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario drivers.

export const HOOK_AFTER_RUNC_START = 'RUNCTS_TEST_DELAY_AFTER_RUNC_START_MS';
export const HOOK_AFTER_RUNC_EXEC = 'RUNCTS_TEST_DELAY_AFTER_RUNC_EXEC_MS';
export const HOOK_EXEC_EXIT = 'RUNCTS_TEST_DELAY_EXEC_EXIT_MS';

export interface DriverContext {
  cd: Containerd;
  runtime: string;
  /** A fresh, recorded container id (ScenarioContext.id). */
  id(prefix: string): string;
}

export interface DriverResult {
  name: string;
  runtime: string;
  report: OrderingReport;
  /** Processes the callers saw start: the report must have at least this many lifecycles. */
  expectedLifecycles: number;
  /** Processes the scenario tried to start: at most this many lifecycles. */
  attempted: number;
  /** Starts that failed where the scenario allows it (execs racing the init's exit). */
  allowedStartFailures: number;
  /** ctr calls that failed where they must not (with output). */
  failures: string[];
  /** ctr calls that hung until their timeout (with output). */
  timeouts: string[];
  /** Containers whose /containers/delete never showed up in the stream. */
  unfinished: string[];
  durationMs: number;
}

/** The exit commands execs and inits cycle through, with the status each must report. */
export const EXIT_COMMANDS: ReadonlyArray<{ argv: readonly string[]; status: number }> = [
  { argv: ['/bin/true'], status: 0 },
  { argv: ['/bin/sh', '-c', 'exit 3'], status: 3 },
  { argv: ['/bin/false'], status: 1 },
  { argv: ['/bin/sh', '-c', 'exit 42'], status: 42 },
  { argv: ['/bin/true'], status: 0 },
  { argv: ['/bin/sh', '-c', 'kill -9 $$'], status: 137 },
];

/** For inits: pid 1 of a pid namespace cannot SIGKILL itself from inside, so no `kill -9 $$`. */
export const INIT_EXIT_COMMANDS: ReadonlyArray<{ argv: readonly string[]; status: number }> = EXIT_COMMANDS.filter(c => c.status !== 137);

/** ctr's own errors (as opposed to a process's exit code) start with "ctr: ". */
function ctrFailed(r: RunResult): boolean {
  return r.timedOut || r.code === null || /^ctr: /m.test(r.stderr);
}

/** Run fn over items with at most n in flight; results in item order. */
export async function mapLimit<T, R>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  return out;
}

const EXEC_TIMEOUT_MS = 30_000;

/** One driver run: its own `ctr events` stream, the caller outcomes, and the final check. */
export class OrderingSession {
  readonly outcomes: CallerOutcome[] = [];
  readonly containers: string[] = [];
  readonly failures: string[] = [];
  readonly timeouts: string[] = [];
  attempted = 0;
  allowedStartFailures = 0;
  private readonly started = Date.now();

  private constructor(readonly ctx: DriverContext, readonly stream: EventStream, readonly name: string) {}

  static async open(ctx: DriverContext, name: string): Promise<OrderingSession> {
    // A fresh stream per driver: no event of an earlier run can be counted.
    return new OrderingSession(ctx, await EventStream.start(ctx.cd), name);
  }

  get cd(): Containerd {
    return this.ctx.cd;
  }

  container(prefix: string): string {
    const id = this.ctx.id(prefix);
    this.containers.push(id);
    return id;
  }

  private record(r: RunResult, what: string, allowed: boolean): void {
    if (r.timedOut) this.timeouts.push(`${what}: ${describeResult(r)}`);
    else if (!allowed) this.failures.push(`${what}: ${describeResult(r)}`);
  }

  /** `ctr run --rm`: the init's lifecycle and status from ctr's exit code. */
  async runRm(cid: string, argv: readonly string[], expectStatus?: number): Promise<void> {
    this.attempted++;
    const r = await this.cd.ctr(['run', '--rm', '--runtime', this.ctx.runtime, BUSYBOX_IMAGE, cid, ...argv], { timeoutMs: 60_000 });
    if (ctrFailed(r)) return this.record(r, 'ctr run --rm', false);
    this.outcomes.push({ container: cid, started: true, status: r.code! });
    if (expectStatus !== undefined && r.code !== expectStatus) this.failures.push(`ctr run --rm: expected exit code ${expectStatus}: ${describeResult(r)}`);
  }

  /** `ctr run -d`; true when it started. The outcome is recorded by removeTask. */
  async runDetached(cid: string, argv: readonly string[], allowFailure = false): Promise<boolean> {
    this.attempted++;
    const r = await this.cd.ctr(['run', '-d', '--runtime', this.ctx.runtime, BUSYBOX_IMAGE, cid, ...argv], { timeoutMs: 60_000 });
    if (ctrFailed(r)) {
      this.record(r, 'ctr run -d', allowFailure);
      return false;
    }
    return true;
  }

  /**
   * `ctr task exec --exec-id`: the exec's lifecycle and status from ctr's exit code (ctr waits
   * for the exec, then deletes it). Returns the status, or undefined when it did not start.
   */
  async exec(cid: string, execId: string, argv: readonly string[], opts: { allowFailure?: boolean; expectStatus?: number } = {}): Promise<number | undefined> {
    this.attempted++;
    const r = await this.cd.ctr(['task', 'exec', '--exec-id', execId, cid, ...argv], { timeoutMs: EXEC_TIMEOUT_MS });
    if (ctrFailed(r)) {
      if (opts.allowFailure && !r.timedOut) this.allowedStartFailures++;
      this.record(r, `ctr task exec ${execId}`, opts.allowFailure ?? false);
      return undefined;
    }
    this.outcomes.push({ container: cid, exec: execId, started: true, status: r.code! });
    if (opts.expectStatus !== undefined && r.code !== opts.expectStatus) {
      this.failures.push(`ctr task exec ${execId}: expected exit code ${opts.expectStatus}: ${describeResult(r)}`);
    }
    return r.code!;
  }

  /** `ctr task kill -s SIGKILL`; true when the signal was delivered. */
  async kill(cid: string): Promise<boolean> {
    const r = await this.cd.ctr(['task', 'kill', '-s', 'SIGKILL', cid], { timeoutMs: 20_000 });
    if (r.timedOut) this.timeouts.push(`ctr task kill: ${describeResult(r)}`);
    return r.code === 0;
  }

  /** Wait for the init's /tasks/exit in the stream. */
  async waitInitExit(cid: string, timeoutMs = 20_000): Promise<boolean> {
    const ns = this.cd.namespace;
    const e = await this.stream.waitFor(
      e => e.topic === '/tasks/exit' && e.namespace === ns && e.payload?.container_id === cid && (e.payload?.id ?? cid) === cid,
      timeoutMs,
    );
    return e !== undefined;
  }

  /**
   * Delete the (exited) task and the container, recording the init's outcome: started as
   * given, status from `ctr task delete` (it reports a non-zero status as a warning).
   */
  async removeTask(cid: string, started: boolean): Promise<void> {
    // A started init's exit must show up in the stream. One killed before it started is only
    // waited for through `ctr task delete` (retried while running): whether its /tasks/exit
    // came is the checker's business.
    if (started && !(await this.waitInitExit(cid))) {
      // Counted with the hangs (the Go shim's are reported, not failed on); the checker
      // reports the missing exit itself.
      this.timeouts.push(`${cid}: no /tasks/exit of the init within 20 s; killing it`);
      await this.kill(cid);
    }
    let status: number | undefined;
    for (const deadline = Date.now() + 20_000; ;) {
      const r = await this.cd.ctr(['task', 'delete', cid], { timeoutMs: 20_000 });
      if (r.code === 0) {
        const m = /exit with non-zero exit code (\d+)/.exec(r.stderr);
        status = m ? Number(m[1]) : 0;
        break;
      }
      if (r.timedOut || Date.now() > deadline || !/must be stopped|running/.test(r.stderr)) {
        this.record(r, 'ctr task delete', false);
        if (!r.timedOut) await this.cd.ctr(['task', 'delete', '--force', cid], { timeoutMs: 20_000 });
        break;
      }
      await sleep(50);
    }
    this.outcomes.push({ container: cid, started, status });
    const r = await this.cd.ctr(['container', 'delete', cid], { timeoutMs: 20_000 });
    if (r.code !== 0) this.record(r, 'ctr container delete', false);
  }

  /**
   * Wait until every container's /containers/delete is in the stream and the stream has been
   * quiet for a moment, then check the invariants on this session's containers.
   */
  async finish(): Promise<DriverResult> {
    const ns = this.cd.namespace;
    const want = new Set(this.containers);
    const unfinished: string[] = [];
    for (const cid of this.containers) {
      const e = await this.stream.waitFor(e => e.topic === '/containers/delete' && e.namespace === ns && e.payload?.id === cid, 15_000);
      if (!e) unfinished.push(cid);
    }
    // Shims forward their events on their own connections: a late one may follow containerd's
    // own /containers/delete. Quiet for 500 ms (at most 5 s) before checking.
    for (let n = -1, deadline = Date.now() + 5_000; n !== this.stream.events.length && Date.now() < deadline; ) {
      n = this.stream.events.length;
      await sleep(500);
    }
    this.stream.stop();
    const events: CtrEvent[] = this.stream.events.filter(e => e.namespace === ns && want.has(eventContainerId(e) ?? ''));
    return {
      name: this.name,
      runtime: this.ctx.runtime,
      report: checkExitOrdering(events, this.outcomes),
      expectedLifecycles: this.outcomes.filter(o => o.started).length,
      attempted: this.attempted,
      allowedStartFailures: this.allowedStartFailures,
      failures: this.failures,
      timeouts: this.timeouts,
      unfinished,
      durationMs: Date.now() - this.started,
    };
  }

  /** Stop the stream without checking (error paths). */
  close(): void {
    this.stream.stop();
  }
}

async function withSession(ctx: DriverContext, name: string, fn: (s: OrderingSession) => Promise<void>): Promise<DriverResult> {
  const s = await OrderingSession.open(ctx, name);
  try {
    await fn(s);
    return await s.finish();
  } finally {
    s.close();
  }
}

/** `ctr run --rm` of inits that exit at once, with mixed exit codes, `concurrency` at a time. */
export function initExitsImmediately(ctx: DriverContext, opts: { count: number; concurrency: number }): Promise<DriverResult> {
  return withSession(ctx, 'init exits immediately', async s => {
    await mapLimit(
      Array.from({ length: opts.count }, (_, i) => i),
      opts.concurrency,
      async i => {
        const c = INIT_EXIT_COMMANDS[i % INIT_EXIT_COMMANDS.length]!;
        await s.runRm(s.container('init'), c.argv, c.status);
      },
    );
  });
}

/**
 * A `sleep 1000` container and `count` execs that exit at once (mixed exit codes),
 * `concurrency` in flight; then the init is killed (status 137).
 */
export function execsExitImmediately(ctx: DriverContext, opts: { count: number; concurrency: number; name?: string }): Promise<DriverResult> {
  return withSession(ctx, opts.name ?? 'execs exit immediately', async s => {
    const cid = s.container('execs');
    const ok = await s.runDetached(cid, ['sleep', '1000']);
    if (ok) {
      await mapLimit(
        Array.from({ length: opts.count }, (_, i) => i),
        opts.concurrency,
        async i => {
          const c = EXIT_COMMANDS[i % EXIT_COMMANDS.length]!;
          await s.exec(cid, `e${i}`, c.argv, { expectStatus: c.status });
        },
      );
      await s.kill(cid);
    }
    await s.removeTask(cid, ok);
  });
}

/** `rounds` rounds of `perRound` execs launched at once against one container. */
export function concurrentExecs(ctx: DriverContext, opts: { perRound: number; rounds: number }): Promise<DriverResult> {
  return withSession(ctx, `${opts.perRound} concurrent execs`, async s => {
    const cid = s.container('conc');
    const ok = await s.runDetached(cid, ['sleep', '1000']);
    if (ok) {
      for (let round = 0; round < opts.rounds; round++) {
        await Promise.all(
          Array.from({ length: opts.perRound }, (_, i) => {
            const c = EXIT_COMMANDS[i % EXIT_COMMANDS.length]!;
            return s.exec(cid, `r${round}-${i}`, c.argv, { expectStatus: c.status });
          }),
        );
      }
      await s.kill(cid);
    }
    await s.removeTask(cid, ok);
  });
}

/**
 * Execs started while the init is exiting: per container, an init that exits after
 * `initLifeMs` (`mode: 'exit'`, status 0) or is SIGKILLed then (`mode: 'kill'`, status 137),
 * and `execsPerContainer` execs (`sleep 5` / `true`) launched spread over
 * [initLifeMs - 3/4 spreadMs, initLifeMs + 1/4 spreadMs]. Execs may fail to start; every exec that
 * started must exit (137 for a `sleep 5` killed with the container) before the init does.
 */
export function execsWhileInitExits(
  ctx: DriverContext,
  opts: { containers: number; execsPerContainer: number; concurrency: number; mode: 'exit' | 'kill'; initLifeMs?: number; spreadMs?: number },
): Promise<DriverResult> {
  const life = opts.initLifeMs ?? 300;
  const spread = opts.spreadMs ?? 400;
  return withSession(ctx, `execs started while the init ${opts.mode === 'exit' ? 'exits' : 'is killed'}`, async s => {
    await mapLimit(
      Array.from({ length: opts.containers }, (_, i) => i),
      opts.concurrency,
      async () => {
        const cid = s.container(opts.mode === 'exit' ? 'dying' : 'killed');
        const argv = opts.mode === 'exit' ? ['/bin/sh', '-c', `sleep ${life / 1000}`] : ['sleep', '1000'];
        const ok = await s.runDetached(cid, argv);
        if (ok) {
          const t0 = Date.now();
          const jobs: Array<Promise<unknown>> = [];
          if (opts.mode === 'kill') jobs.push(sleep(life).then(() => s.kill(cid)));
          for (let k = 0; k < opts.execsPerContainer; k++) {
            // An exec takes a while to reach runc: most launch before the exit, a few after.
            const at = life - (spread * 3) / 4 + (opts.execsPerContainer > 1 ? (k * spread) / (opts.execsPerContainer - 1) : 0);
            const cmd = k % 2 === 0 ? ['sleep', '5'] : ['/bin/true'];
            jobs.push(sleep(Math.max(0, t0 + at - Date.now())).then(() => s.exec(cid, `x${k}`, cmd, { allowFailure: true })));
          }
          await Promise.all(jobs);
        }
        await s.removeTask(cid, ok);
      },
    );
  });
}

/**
 * Kill racing start. `runs` times `ctr run -d ... sleep 1000`, `creates` times `ctr container
 * create` then `ctr task start -d`, each raced by `ctr task kill -s SIGKILL`, retried until it
 * lands. The kill's moment cycles through three modes: retried from the start (it lands as
 * soon as the task exists: between create and start), a moment (0-250 ms) after /tasks/create
 * showed up (around runc start and the TaskStart publication), and right after the start
 * command returned. A start may fail (killed while created); the status is always 137.
 */
export function killRacingStart(ctx: DriverContext, opts: { runs: number; creates: number; concurrency: number }): Promise<DriverResult> {
  return withSession(ctx, 'kill racing start', async s => {
    const ns = s.cd.namespace;
    const killLoop = async (cid: string, startDone: () => boolean, mode: number, offsetMs: number, startReturned: Promise<unknown>): Promise<void> => {
      if (mode === 1) {
        await s.stream.waitFor(e => e.topic === '/tasks/create' && e.namespace === ns && e.payload?.container_id === cid, 60_000);
        await sleep(offsetMs);
      } else if (mode === 2) {
        await startReturned;
      }
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        if (await s.kill(cid)) return;
        if (startDone()) {
          // The start finished (or failed) and still no kill landed: one more try, then give up.
          await s.kill(cid);
          return;
        }
        await sleep(5);
      }
    };
    const items = [...Array.from({ length: opts.runs }, () => 'run' as const), ...Array.from({ length: opts.creates }, () => 'create' as const)];
    await mapLimit(items, opts.concurrency, async (kind, i) => {
      const cid = s.container(kind === 'run' ? 'krun' : 'kcreate');
      let done = false;
      let started = false;
      const mode = i % 3;
      const offset = (i * 53) % 250;
      let returned!: () => void;
      const startReturned = new Promise<void>(res => (returned = res));
      if (kind === 'run') {
        const killer = killLoop(cid, () => done, mode, offset, startReturned);
        started = await s.runDetached(cid, ['sleep', '1000'], true);
        done = true;
        returned();
        await killer;
      } else {
        s.attempted++;
        const c = await s.cd.ctr(['container', 'create', '--runtime', s.ctx.runtime, BUSYBOX_IMAGE, cid, 'sleep', '1000'], { timeoutMs: 30_000 });
        if (c.code !== 0) {
          s.failures.push(`ctr container create: ${describeResult(c)}`);
          return;
        }
        const killer = killLoop(cid, () => done, mode, offset, startReturned);
        const r = await s.cd.ctr(['task', 'start', '-d', cid], { timeoutMs: 60_000 });
        done = true;
        returned();
        started = !ctrFailed(r);
        if (r.timedOut) s.timeouts.push(`ctr task start -d: ${describeResult(r)}`);
        await killer;
        if (!started) {
          const ls = await s.cd.ctr(['task', 'ls', '-q'], { timeoutMs: 20_000 });
          if (!ls.stdout.split('\n').includes(cid)) {
            // Start failed before a task existed: nothing to check for this one.
            s.failures.push(`ctr task start -d failed without a task: ${describeResult(r)}`);
            await s.cd.ctr(['container', 'delete', cid], { timeoutMs: 20_000 });
            return;
          }
        }
      }
      if (!started) s.allowedStartFailures++;
      await s.removeTask(cid, started);
    });
  });
}

/** Watch this containerd's shims while a scenario runs: did they carry these environment variables? */
export function watchShimEnv(cd: Containerd, env: Readonly<Record<string, string>>, intervalMs = 250): () => { shims: number; withEnv: number; without: string[] } {
  const seen = new Map<number, boolean>();
  const want = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const poll = (): void => {
    for (const p of cd.shims()) {
      if (seen.has(p.pid)) continue;
      try {
        const environ = fs.readFileSync(`/proc/${p.pid}/environ`, 'utf8');
        // Empty while the process is exiting (its memory is gone) or between fork and exec: not known yet.
        if (!environ) continue;
        const vars = new Set(environ.split('\0'));
        seen.set(p.pid, want.every(w => vars.has(w)));
      } catch {
        // gone already
      }
    }
  };
  const timer = setInterval(poll, intervalMs);
  return () => {
    clearInterval(timer);
    poll();
    const without = [...seen].filter(([, ok]) => !ok).map(([pid]) => String(pid));
    return { shims: seen.size, withEnv: seen.size - without.length, without };
  };
}

/**
 * Exec id reuse: `chains` exec ids, each used `perChain` times one after the other (ctr task
 * exec deletes the exec when it is done, so the id is free again), the chains in parallel.
 */
export function execIdReuse(ctx: DriverContext, opts: { chains: number; perChain: number }): Promise<DriverResult> {
  return withSession(ctx, 'exec id reuse', async s => {
    const cid = s.container('reuse');
    const ok = await s.runDetached(cid, ['sleep', '1000']);
    if (ok) {
      await Promise.all(
        Array.from({ length: opts.chains }, async (_, chain) => {
          for (let k = 0; k < opts.perChain; k++) {
            const c = EXIT_COMMANDS[(chain + k) % EXIT_COMMANDS.length]!;
            await s.exec(cid, `same-${chain}`, c.argv, { expectStatus: c.status });
          }
        }),
      );
      await s.kill(cid);
    }
    await s.removeTask(cid, ok);
  });
}

// ---------------------------------------------------------------------------------------------
// Judging a driver's result.

function firstFew<T>(xs: readonly T[], n = 8): T[] {
  return xs.slice(0, n);
}

/**
 * Assert a driver's result. Always: no test that finds nothing passes (the stream showed every
 * container's end and a start event for every process the callers started) and the ctr calls
 * that must succeed did. strict: no hung ctr call, every started process exited, and every
 * violation of the three invariants fails; otherwise violations and hangs are printed as
 * comments (what a runtime without the guarantee does), never failed on.
 */
export function assertOrderingResult(t: Test, res: DriverResult, strict: boolean): void {
  const rep = res.report;
  t.ok(res.expectedLifecycles > 0, `processes started (${res.expectedLifecycles})`);
  t.same(res.unfinished, [], "every container's /containers/delete arrived in the event stream");
  t.ok(rep.started >= res.expectedLifecycles, `start events for all ${res.expectedLifecycles} processes the callers started (saw ${rep.started})`);
  t.ok(rep.lifecycles <= res.attempted, `no more lifecycles (${rep.lifecycles}) than processes attempted (${res.attempted})`);
  t.same(firstFew(res.failures, 5), [], `ctr calls that must succeed did (${res.failures.length} failed)`);

  const by = violationsByInvariant(rep.violations);
  const names = { 1: 'no exit before its start event', 2: "every exec's exit before the init's exit", 3: 'exactly one exit per started process, right pid and status' };
  if (strict) {
    t.same(firstFew(res.timeouts, 3), [], `no ctr call hung (${res.timeouts.length})`);
    t.equal(rep.lifecycles, rep.started, 'every started process exited');
    for (const k of [1, 2, 3] as const) {
      t.same(
        firstFew(by[k].map(v => v.message)),
        [],
        `invariant ${k}: ${names[k]} (${by[k].length} violations${by[k].length ? `: ${summarizeKinds(by[k])}` : ''})`,
        { events: firstFew(by[k]).map(v => v.events) },
      );
    }
  } else {
    for (const k of [1, 2, 3] as const) {
      if (by[k].length) t.comment(`${res.runtime}: invariant ${k} (${names[k]}): ${by[k].length} violations (${summarizeKinds(by[k])}); e.g. ${JSON.stringify(by[k][0]!.events)}`);
    }
    if (res.timeouts.length) t.comment(`${res.runtime}: ${res.timeouts.length} ctr calls hung until their timeout; e.g. ${res.timeouts[0]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The plan the suite and the stress command share.

export interface PlanEntry {
  name: string;
  /** Delay hooks for the shim (containerd's environment); the Go shim ignores them. */
  hooks?: Readonly<Record<string, string>>;
  /** Hooked variants only make sense for runcts. */
  runctsOnly?: boolean;
  /** The race the hooks force: runcts must show it at least once (proof that the hook works). */
  expectRace?: 'exitedBeforeStartPublished' | 'execExitsPublishedAfterInitExited';
  run(ctx: DriverContext): Promise<DriverResult>;
}

/** The scenarios, plain and with the delay hooks that widen their race. scale multiplies counts. */
export function orderingPlan(scale = 1): PlanEntry[] {
  const n = (x: number): number => Math.max(1, Math.round(x * scale));
  const plain: PlanEntry[] = [
    { name: 'init exits immediately', run: ctx => initExitsImmediately(ctx, { count: n(24), concurrency: 4 }) },
    { name: 'execs exit immediately', run: ctx => execsExitImmediately(ctx, { count: n(300), concurrency: 8 }) },
    { name: '50 concurrent execs', run: ctx => concurrentExecs(ctx, { perRound: 50, rounds: n(3) }) },
    { name: 'execs started while the init exits', run: ctx => execsWhileInitExits(ctx, { containers: n(10), execsPerContainer: 8, concurrency: 3, mode: 'exit' }) },
    { name: 'execs started while the init is killed', run: ctx => execsWhileInitExits(ctx, { containers: n(6), execsPerContainer: 8, concurrency: 3, mode: 'kill' }) },
    { name: 'kill racing start', run: ctx => killRacingStart(ctx, { runs: n(10), creates: n(10), concurrency: 4 }) },
    { name: 'exec id reuse', run: ctx => execIdReuse(ctx, { chains: 4, perChain: n(20) }) },
  ];
  const hooked: PlanEntry[] = [
    {
      name: 'init exits immediately, TaskStart delayed',
      hooks: { [HOOK_AFTER_RUNC_START]: '100' },
      runctsOnly: true,
      expectRace: 'exitedBeforeStartPublished',
      run: ctx => initExitsImmediately(ctx, { count: n(12), concurrency: 4 }),
    },
    {
      name: 'execs exit immediately, exec-started delayed',
      hooks: { [HOOK_AFTER_RUNC_EXEC]: '50' },
      runctsOnly: true,
      expectRace: 'exitedBeforeStartPublished',
      run: ctx => execsExitImmediately(ctx, { count: n(240), concurrency: 8 }),
    },
    {
      name: '50 concurrent execs, exec-started and exec exits delayed',
      hooks: { [HOOK_AFTER_RUNC_EXEC]: '50', [HOOK_EXEC_EXIT]: '50' },
      runctsOnly: true,
      expectRace: 'exitedBeforeStartPublished',
      run: ctx => concurrentExecs(ctx, { perRound: 50, rounds: n(3) }),
    },
    {
      name: 'execs started while the init exits, exec exits delayed',
      hooks: { [HOOK_EXEC_EXIT]: '200', [HOOK_AFTER_RUNC_EXEC]: '30' },
      runctsOnly: true,
      expectRace: 'execExitsPublishedAfterInitExited',
      run: ctx => execsWhileInitExits(ctx, { containers: n(6), execsPerContainer: 8, concurrency: 3, mode: 'exit' }),
    },
    {
      name: 'execs started while the init is killed, exec exits delayed',
      hooks: { [HOOK_EXEC_EXIT]: '200', [HOOK_AFTER_RUNC_EXEC]: '30' },
      runctsOnly: true,
      expectRace: 'execExitsPublishedAfterInitExited',
      run: ctx => execsWhileInitExits(ctx, { containers: n(5), execsPerContainer: 8, concurrency: 3, mode: 'kill' }),
    },
    {
      name: 'kill racing start, TaskStart delayed',
      hooks: { [HOOK_AFTER_RUNC_START]: '150' },
      runctsOnly: true,
      run: ctx => killRacingStart(ctx, { runs: n(6), creates: n(6), concurrency: 4 }),
    },
    {
      name: 'exec id reuse, exec-started delayed',
      hooks: { [HOOK_AFTER_RUNC_EXEC]: '50' },
      runctsOnly: true,
      expectRace: 'exitedBeforeStartPublished',
      run: ctx => execIdReuse(ctx, { chains: 4, perChain: n(12) }),
    },
  ];
  return [...plain, ...hooked];
}

/** Counts per invariant for one or more results. */
export interface OrderingTally {
  lifecycles: number;
  inits: number;
  execs: number;
  events: number;
  violations: Record<1 | 2 | 3, number>;
  kinds: Map<ViolationKind, number>;
  failures: number;
  timeouts: number;
  exitedBeforeStartPublished: number;
  execExitsPublishedAfterInitExited: number;
}

export function emptyTally(): OrderingTally {
  return {
    lifecycles: 0, inits: 0, execs: 0, events: 0, violations: { 1: 0, 2: 0, 3: 0 }, kinds: new Map(), failures: 0, timeouts: 0,
    exitedBeforeStartPublished: 0, execExitsPublishedAfterInitExited: 0,
  };
}

export function addToTally(t: OrderingTally, r: DriverResult): void {
  t.lifecycles += r.report.lifecycles;
  t.inits += r.report.inits;
  t.execs += r.report.execs;
  t.events += r.report.events;
  for (const v of r.report.violations) {
    t.violations[v.invariant]++;
    t.kinds.set(v.kind, (t.kinds.get(v.kind) ?? 0) + 1);
  }
  t.failures += r.failures.length;
  t.timeouts += r.timeouts.length;
  t.exitedBeforeStartPublished += r.report.exitedBeforeStartPublished;
  t.execExitsPublishedAfterInitExited += r.report.execExitsPublishedAfterInitExited;
}

export function formatTally(t: OrderingTally): string {
  const kinds = [...t.kinds].map(([k, c]) => `${k} x${c}`).join(', ');
  return (
    `${t.lifecycles} lifecycles (${t.inits} inits, ${t.execs} execs), ${t.events} task events; ` +
    `races hit: exited before start published ${t.exitedBeforeStartPublished}, exec exit published after init exited ${t.execExitsPublishedAfterInitExited}; ` +
    `violations: invariant 1: ${t.violations[1]}, invariant 2: ${t.violations[2]}, invariant 3: ${t.violations[3]}` +
    (kinds ? ` (${kinds})` : '') +
    `; failed ctr calls: ${t.failures}, timed out: ${t.timeouts}`
  );
}

/** One line per result, for comments and the stress log. */
export function formatResult(r: DriverResult): string {
  const rep = r.report;
  const by = violationsByInvariant(rep.violations);
  return (
    `${r.runtime}: ${r.name}: ${rep.lifecycles} lifecycles (${rep.inits} inits, ${rep.execs} execs; expected >= ${r.expectedLifecycles}, ` +
    `attempted ${r.attempted}, allowed start failures ${r.allowedStartFailures}${rep.unstartedInits ? `, killed before start ${rep.unstartedInits}` : ''}), ` +
    `${rep.events} task events, ${Math.round(r.durationMs)} ms; races hit: exited before start published ${rep.exitedBeforeStartPublished}, ` +
    `exec exit published after init exited ${rep.execExitsPublishedAfterInitExited}; violations 1/2/3: ${by[1].length}/${by[2].length}/${by[3].length}` +
    (rep.violations.length ? ` (${summarizeKinds(rep.violations)})` : '')
  );
}
