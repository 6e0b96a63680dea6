// The reaper: the one place child exits come from (docs/reaper.md).
//
// Invariants:
// 1. Collection never waits on a consumer. On SIGCHLD, waitpid(-1, WNOHANG) runs until nothing
//    is left; every exit goes into an unbounded FIFO and is delivered in collection order.
//    Between two deliveries the reaper collects again, so a slow consumer never leaves zombies
//    behind it for longer than one of its own calls; an async consumer is never awaited.
// 2. Every collected exit is delivered exactly once: to the pid's waiters (all of them, then
//    they are gone) or, when nobody has claimed the pid yet, kept for the first wait(pid).
//    Kept exits older than keepUnclaimedMs (10 min) are pruned; then every subscriber sees it.
// 3. spawn() registers the exit waiter before it returns. Reaping happens only on this thread,
//    so no exit can come between the two, and an exit kept for an earlier process with the same
//    pid is discarded: a reused pid's waiter only ever gets the new process's exit.
// 4. Nothing in the shim uses Node's child-process module: libuv would waitpid its own children, and
//    we would steal their exits (and they ours).
import { native as loadNative, type Native, type SpawnOptions } from './native';

export interface Exit {
  pid: number;
  /** Exit code, or 128 + signal number for a killed process. */
  status: number;
  /** When the reaper collected it. */
  exitedAt: Date;
}

/** The part of a pino logger the reaper uses. */
export interface ReaperLogger {
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

export interface ReaperOptions {
  /** How long an exit nobody has claimed is kept for a later wait(pid). Default 10 minutes. */
  keepUnclaimedMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export const DEFAULT_KEEP_UNCLAIMED_MS = 10 * 60 * 1000;

interface Collected {
  exit: Exit;
  /** Position in collection order; see mark(). */
  seq: number;
}

/** An unbounded FIFO with O(1) push and shift. */
class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

interface Subscription {
  fn: (e: Exit) => void;
}

export class Reaper {
  /** At most one running reaper per process: two would steal each other's exits. */
  private static running: Reaper | undefined;

  private readonly waiters = new Map<number, Array<(e: Exit) => void>>();
  private pendingWaiters = 0;
  private readonly unclaimed = new Map<number, Collected>();
  private readonly queue = new Fifo<Collected>();
  private readonly subscriptions = new Set<Subscription>();
  private seq = 0;
  private delivering = false;
  private stopped = false;
  /** Keeps the event loop alive while a waiter is pending (signal handles are unref'd by Node). */
  private readonly keepAlive: NodeJS.Timeout;
  private readonly keepUnclaimedMs: number;
  private readonly now: () => number;
  private readonly onSigchld = (): void => this.drain();

  private constructor(
    private readonly n: Native,
    private readonly log: ReaperLogger | undefined,
    opts: ReaperOptions,
  ) {
    this.keepUnclaimedMs = opts.keepUnclaimedMs ?? DEFAULT_KEEP_UNCLAIMED_MS;
    this.now = opts.now ?? Date.now;
    this.keepAlive = setInterval(() => { /* keep-alive only */ }, 1 << 30);
    this.keepAlive.unref();
  }

  /**
   * Become the child subreaper, listen for SIGCHLD and collect whatever already exited.
   * Throws if another reaper is running in this process.
   */
  static start(n: Native = loadNative(), logger?: ReaperLogger, opts: ReaperOptions = {}): Reaper {
    if (Reaper.running) throw new Error('a reaper is already running in this process');
    const r = new Reaper(n, logger, opts);
    n.setSubreaper();
    Reaper.running = r;
    process.on('SIGCHLD', r.onSigchld);
    r.drain();
    return r;
  }

  /**
   * Spawn a child (native spawn: exact fd map, default signals) with its exit waiter registered
   * before this returns. Throws, leaving nothing behind, when the spawn fails.
   */
  spawn(opts: SpawnOptions): { pid: number; exited: Promise<Exit> } {
    this.assertRunning();
    const pid = this.n.spawn(opts);
    // The new process cannot have been reaped yet (only drain() reaps, on this thread), so an
    // exit kept for this pid belongs to an earlier process that had the same pid.
    this.unclaimed.delete(pid);
    return { pid, exited: this.register(pid) };
  }

  /**
   * A position in collection order, for wait(pid, since): take it before starting whatever
   * creates the process (e.g. before spawning `runc create`).
   */
  mark(): number {
    return this.seq;
  }

  /**
   * Claim the exit of a process we did not spawn ourselves (e.g. a container init reparented
   * to us when `runc create` exits, its pid read from the pid file). An exit collected before
   * the claim is handed over; with `since` (from mark()) an exit collected before that mark is
   * treated as an earlier process with the same pid and discarded. Several claims of one pid
   * all get its next exit. Pending claims keep the process alive until stop().
   */
  wait(pid: number, since?: number): Promise<Exit> {
    this.assertRunning();
    const kept = this.unclaimed.get(pid);
    if (kept) {
      this.unclaimed.delete(pid);
      if (since === undefined || kept.seq >= since) return Promise.resolve(kept.exit);
      this.log?.debug?.({ pid, status: kept.exit.status }, 'discarding an exit of an earlier process with this pid');
    }
    return this.register(pid);
  }

  /**
   * Be told of every exit, in collection order, after the pid's waiters have been resolved.
   * Exceptions (and rejections of returned promises) are logged; nothing is awaited.
   * Returns the unsubscribe function.
   */
  subscribe(fn: (e: Exit) => void): () => void {
    const sub: Subscription = { fn };
    this.subscriptions.add(sub);
    return () => {
      this.subscriptions.delete(sub);
    };
  }

  /**
   * Stop listening for SIGCHLD and let the process exit. Pending waiters stay pending (they are
   * not rejected); spawn() and wait() throw afterwards. The subreaper flag stays set.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    process.removeListener('SIGCHLD', this.onSigchld);
    clearInterval(this.keepAlive);
    if (Reaper.running === this) Reaper.running = undefined;
  }

  /** Number of exits kept for a claim that has not come yet. */
  get unclaimedCount(): number {
    return this.unclaimed.size;
  }

  /** Collect and deliver everything that has exited. Runs on SIGCHLD; safe to call at any time. */
  drain(): void {
    if (this.stopped) return;
    this.collect();
    // Re-entrant calls (a consumer that spawns, drains or stops) only collect: the outer loop
    // delivers, which keeps delivery in collection order.
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (let c = this.queue.shift(); c !== undefined; c = this.queue.shift()) {
        this.deliver(c);
        if (!this.stopped) this.collect();
      }
    } finally {
      this.delivering = false;
    }
    this.prune();
  }

  private collect(): void {
    let reaped: Array<{ pid: number; status: number }>;
    try {
      reaped = this.n.reap();
    } catch (err) {
      // Nothing was taken from the kernel; the next SIGCHLD tries again.
      this.log?.error({ err }, 'reaping children failed');
      return;
    }
    if (reaped.length === 0) return;
    const exitedAt = new Date(this.now());
    for (const { pid, status } of reaped) {
      this.queue.push({ exit: Object.freeze({ pid, status, exitedAt }), seq: this.seq++ });
    }
  }

  private deliver(c: Collected): void {
    const { exit } = c;
    const ws = this.waiters.get(exit.pid);
    if (ws) {
      this.waiters.delete(exit.pid);
      this.pendingWaiters -= ws.length;
      if (this.pendingWaiters === 0) this.keepAlive.unref();
      for (const resolve of ws) resolve(exit);
    } else {
      // Delete first so that Map order stays collection order (prune relies on it).
      this.unclaimed.delete(exit.pid);
      this.unclaimed.set(exit.pid, c);
    }
    for (const sub of [...this.subscriptions]) {
      if (!this.subscriptions.has(sub)) continue; // unsubscribed by an earlier subscriber
      try {
        const ret: unknown = sub.fn(exit);
        if (ret instanceof Promise) {
          ret.catch((err: unknown) => this.log?.error({ err, pid: exit.pid }, 'exit subscriber failed'));
        }
      } catch (err) {
        this.log?.error({ err, pid: exit.pid }, 'exit subscriber failed');
      }
    }
  }

  private register(pid: number): Promise<Exit> {
    return new Promise<Exit>((resolve) => {
      const ws = this.waiters.get(pid);
      if (ws) ws.push(resolve);
      else this.waiters.set(pid, [resolve]);
      if (this.pendingWaiters++ === 0) this.keepAlive.ref();
    });
  }

  private prune(): void {
    const cutoff = this.now() - this.keepUnclaimedMs;
    for (const [pid, c] of this.unclaimed) {
      if (c.exit.exitedAt.getTime() > cutoff) break; // the rest are younger
      this.unclaimed.delete(pid);
      this.log?.debug?.({ pid, status: c.exit.status }, 'pruned an exit nobody claimed');
    }
  }

  private assertRunning(): void {
    if (this.stopped) throw new Error('reaper stopped');
  }
}
