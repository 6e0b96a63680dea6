// Exit-event ordering for one container: the single place that decides when a TaskExit may leave.
//
// Invariants (DESIGN lesson 3, seeds/002):
//  I1  no TaskExit of a process before its TaskStart / TaskExecStarted. (Each process holds an
//      exit seen while it is `starting`, see process/lifecycle.ts; this module never sees it early.)
//  I2  every exec's TaskExit before the init's TaskExit: the init's exit is held while any exec is
//      starting (runc exec not yet returned) or running (started, exit not yet published), and
//      released by whichever of those finishes last, right after that exec's own TaskExit.
//  I3  each release callback runs exactly once.
// Single-threaded and synchronous: no I/O, no timers except the last-resort release below, so it
// can be unit tested with fake exits and a fake clock.

export interface Clock {
  setTimeout(fn: () => void, ms: number): { unref?(): void };
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * An init exit held longer than this is released anyway: an exec that never reports its exit
 * (it escaped the container's pid namespace) must not keep the whole container from stopping.
 */
export const INIT_HOLD_LIMIT_MS = 30_000;

export class ExitOrdering {
  private starting = 0;
  private readonly running = new Set<string>();
  private heldInit: { publish: () => void; timer: unknown } | undefined;

  constructor(
    private readonly clock: Clock = realClock,
    private readonly onForcedRelease: (pendingExecs: string[]) => void = () => undefined,
    private readonly holdLimitMs = INIT_HOLD_LIMIT_MS,
  ) {}

  /** An exec's start began (before `runc exec`). */
  execStarting(): void {
    this.starting++;
  }

  /** The exec's TaskExecStarted is about to be published: it now counts as running. */
  execStarted(execId: string): void {
    this.starting--;
    this.running.add(execId);
  }

  /** The exec never started: it will have no TaskExit. */
  execStartFailed(): void {
    this.starting--;
    this.release();
  }

  /** Publish the exec's TaskExit now, then let a held init exit follow if it was the last. */
  execExited(execId: string, publish: () => void): void {
    publish();
    this.running.delete(execId);
    this.release();
  }

  /** Publish the init's TaskExit now, or hold it until the last starting/running exec is done. */
  initExited(publish: () => void): void {
    if (!this.blocked) {
      publish();
      return;
    }
    const timer = this.clock.setTimeout(() => {
      const held = this.heldInit;
      if (!held) return;
      this.heldInit = undefined;
      this.onForcedRelease([...this.running]);
      held.publish();
    }, this.holdLimitMs);
    (timer as { unref?(): void }).unref?.();
    this.heldInit = { publish, timer };
  }

  get holdingInit(): boolean {
    return this.heldInit !== undefined;
  }

  /** For diagnostics: execs starting, and ids of execs whose exit is not published yet. */
  get pending(): { starting: number; running: string[] } {
    return { starting: this.starting, running: [...this.running] };
  }

  private get blocked(): boolean {
    return this.starting > 0 || this.running.size > 0;
  }

  private release(): void {
    if (!this.heldInit || this.blocked) return;
    const held = this.heldInit;
    this.heldInit = undefined;
    this.clock.clearTimeout(held.timer);
    held.publish();
  }
}
