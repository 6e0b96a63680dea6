// The container's init process: created by `runc create`, reparented to the shim, reaped by pid.
import type { Logger } from '../../framework/logger';
import type { Exit } from '../../framework/reaper';
import { runtimeError } from '../errors';
import type { ProcessIO, StdioPaths } from '../io';
import type { RuncApi } from '../runc';
import { testDelay } from '../testhooks';
import { ShimProcess, type LifecycleSink } from './lifecycle';
import { check, exitOf, type ExitInfo } from './state';

/** How long Delete of a never-started container waits for runc delete's kill of the init to be reaped. */
const CREATED_EXIT_WAIT_MS = 5000;
const SIGKILL = 9;

export class InitProcess extends ShimProcess {
  protected readonly startFailure = 'OCI runtime start failed';
  protected readonly reportsUnstartedExit = true;
  private readonly rawExit: Promise<Exit>;

  constructor(
    id: string,
    pid: number,
    readonly bundle: string,
    stdio: StdioPaths,
    io: ProcessIO,
    private readonly runc: RuncApi,
    private readonly killAllOnExit: boolean,
    sink: LifecycleSink,
    log: Logger,
    /** The reaper's claim on this pid; it may already hold the exit (collected before the pid file was read). */
    exit: Promise<Exit>,
  ) {
    super(id, stdio, io, sink, log);
    this.pid = pid;
    this.rawExit = exit;
    this.watch(exit);
  }

  protected async launch(): Promise<void> {
    await this.runc.start(this.id);
    await testDelay('AFTER_RUNC_START');
  }

  protected async afterExit(): Promise<void> {
    if (this.killAllOnExit) {
      // Without its own pid namespace nothing else kills the container's other processes.
      await this.runc.kill(this.id, SIGKILL, true).catch((err) => this.log.debug({ err }, 'kill --all after init exit'));
    }
  }

  async kill(signal: number, all: boolean): Promise<void> {
    check(this.state, 'kill');
    try {
      await this.runc.kill(this.id, signal, all);
    } catch (err) {
      throw runtimeError(err, 'OCI runtime kill failed');
    }
  }

  /** Remove the runc container; returns the exit the caller reports. */
  async delete(): Promise<ExitInfo> {
    check(this.state, 'delete');
    if (this.state.kind === 'stopped') await this.exitHandled;
    const neverStarted = this.state.kind === 'created';
    try {
      await this.runc.delete(this.id, { force: neverStarted });
    } catch (err) {
      const e = runtimeError(err, 'OCI runtime delete failed');
      if (!/does not exist|not found/i.test(e.message)) throw e;
    }
    if (neverStarted) {
      // runc delete killed the init; collect its real status rather than inventing one.
      const exit = await Promise.race([
        this.rawExit,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), CREATED_EXIT_WAIT_MS).unref()),
      ]);
      if (exit && this.state.kind === 'created') this.finishExit({ status: exit.status, exitedAt: exit.exitedAt }, this.reportsUnstartedExit);
      await this.exitHandled;
    }
    return this.markDeleted(exitOf(this.state) ?? { status: 128 + SIGKILL, exitedAt: new Date() });
  }

  async pids(): Promise<number[]> {
    try {
      return await this.runc.ps(this.id);
    } catch (err) {
      throw runtimeError(err, 'OCI runtime ps failed');
    }
  }
}
