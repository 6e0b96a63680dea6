// What init and exec processes share: the state machine driven by start and exit, the hold of an
// exit seen while starting, output drain before the exit is reported, and Wait.
import type { Logger } from '../../framework/logger';
import type { Exit } from '../../framework/reaper';
import { runtimeError } from '../errors';
import type { ProcessIO, StdioPaths } from '../io';
import { check, type ExitInfo, type Operation, type ProcessState, type StateKind } from './state';

/** How long output may keep flowing after the process exited (a background child can hold the pipe forever). */
const DRAIN_TIMEOUT_MS = 2000;

/** Where a process's lifecycle events go: the container wires these to the ordering and the outbox. */
export interface LifecycleSink {
  /** The process started: publish TaskStart / TaskExecStarted. Called once, before exited(). */
  started(p: ShimProcess): void;
  /** The process exited after it started: publish its TaskExit, then call report() (answers Wait). */
  exited(p: ShimProcess, exit: ExitInfo, report: () => void): void;
}

export abstract class ShimProcess {
  state: ProcessState = { kind: 'created' };
  pid = 0;
  private waiters: Array<(e: ExitInfo) => void> = [];
  /** Settles once the exit has been fully processed (output drained, event published, Wait answered). */
  protected exitHandled: Promise<void> | undefined;
  /** Set once Wait may be answered. */
  private reported: ExitInfo | undefined;

  constructor(
    /** Container id for the init, exec id for an exec. */
    readonly id: string,
    readonly stdio: StdioPaths,
    protected readonly io: ProcessIO,
    protected readonly sink: LifecycleSink,
    protected readonly log: Logger,
  ) {}

  /** Run the process (`runc start` / `runc exec`); must set `pid` and call watch() for its exit. */
  protected abstract launch(): Promise<void>;
  /** Work between the exit and its report (thaw, kill the rest of the container, test delays); `from` is the state the exit ended. */
  protected abstract afterExit(from: StateKind): Promise<void>;
  protected abstract readonly startFailure: string;
  /**
   * Whether an exit before any start is still published. The init: yes, as the Go shim does —
   * consumers learn from TaskExit that a created task died (killed, or deleted, before Start).
   * An exec: it has no pid before it starts, so there is nothing to report.
   */
  protected abstract readonly reportsUnstartedExit: boolean;

  allow(op: Operation): void {
    check(this.state, op);
  }

  async start(): Promise<void> {
    check(this.state, 'start');
    this.state = { kind: 'starting' };
    try {
      await this.launch();
    } catch (err) {
      const held = this.heldExit();
      this.state = { kind: 'created' };
      if (held) this.finishExit(held, this.reportsUnstartedExit);
      throw runtimeError(err, this.startFailure);
    }
    const held = this.heldExit();
    this.state = { kind: 'running' };
    this.sink.started(this);
    if (held) this.finishExit(held, true);
  }

  wait(): Promise<ExitInfo> {
    if (this.reported) return Promise.resolve(this.reported);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  closeStdin(): void {
    check(this.state, 'closeIO');
    this.io.closeStdin();
  }

  resizePty(width: number, height: number): void {
    check(this.state, 'closeIO'); // the same states: anything not deleted
    this.io.resize(width, height);
  }

  /** Route the reaper's exit for our pid into the state machine. */
  protected watch(exit: Promise<Exit>): void {
    void exit.then((e) => this.onExit({ status: e.status, exitedAt: e.exitedAt }));
  }

  /** An exit that arrived while a runc call that changes the state (start, pause) was in flight. */
  protected heldExit(): ExitInfo | undefined {
    return this.state.kind === 'starting' || this.state.kind === 'pausing' ? this.state.heldExit : undefined;
  }

  private onExit(exit: ExitInfo): void {
    switch (this.state.kind) {
      case 'starting':
        // I1: no TaskExit before the start event; start() publishes it right after.
      case 'pausing':
        // Held until the freeze settled: afterExit must know whether to thaw what is left.
        this.state.heldExit = exit;
        return;
      case 'running':
      case 'paused':
        this.finishExit(exit, true);
        return;
      case 'created':
        this.finishExit(exit, this.reportsUnstartedExit);
        return;
      case 'stopped':
      case 'deleted':
        return;
    }
  }

  /** stopped now; the rest (drain, event if `publish`, Wait) follows in order. */
  protected finishExit(exit: ExitInfo, publish: boolean): void {
    const from = this.state.kind;
    this.state = { kind: 'stopped', exit, published: publish };
    this.exitHandled = (async () => {
      await this.afterExit(from);
      const drained = await this.io.drained(DRAIN_TIMEOUT_MS);
      if (!drained) this.log.warn({ id: this.id, pid: this.pid }, 'output still open after exit; stopped waiting for it');
      // exitHandled settles only once the exit is reported: the ordering may hold the init's
      // TaskExit for execs, and Delete must not overtake it.
      await new Promise<void>((reported) => {
        const report = () => {
          this.report(exit);
          reported();
        };
        if (publish) this.sink.exited(this, exit, report);
        else report();
      });
    })();
  }

  /** The process is gone for good: release its stdio, answer Wait with `exit`. */
  protected markDeleted(exit: ExitInfo): ExitInfo {
    this.io.close();
    this.state = { kind: 'deleted', exit };
    this.report(exit);
    return exit;
  }

  /** Answer Wait (now and later) with this exit. */
  protected report(exit: ExitInfo): void {
    this.reported ??= exit;
    for (const w of this.waiters.splice(0)) w(this.reported);
  }
}
