// The container's init process: created by `runc create`, reparented to the shim, reaped by pid.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../framework/logger';
import type { Exit } from '../../framework/reaper';
import { runtimeError } from '../errors';
import type { ProcessIO, StdioPaths } from '../io';
import type { CheckpointOptions, RuncApi } from '../runc';
import { testDelay } from '../testhooks';
import { ShimProcess, type LifecycleSink } from './lifecycle';
import { check, exitOf, type ExitInfo, type StateKind } from './state';

/** How long Delete of a never-started container waits for runc delete's kill of the init to be reaped. */
const CREATED_EXIT_WAIT_MS = 5000;
const SIGKILL = 9;
let updateFileSeq = 0;

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

  protected async afterExit(from: StateKind): Promise<void> {
    if (from === 'paused') {
      // What is left in the frozen cgroup could not die (or be killed) until it is thawed.
      await this.runc.resume(this.id).catch((err) => this.log.warn({ err }, 'resume after the init exited while paused'));
    }
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

  /** Freeze the container. An exit during `runc pause` is held and handled once the freeze settled. */
  async pause(): Promise<void> {
    check(this.state, 'pause');
    this.state = { kind: 'pausing' };
    let failure: unknown;
    try {
      await this.runc.pause(this.id);
    } catch (err) {
      failure = err;
    }
    const held = this.heldExit();
    this.state = failure ? { kind: 'running' } : { kind: 'paused' };
    if (held) this.finishExit(held, true);
    if (failure) throw runtimeError(failure, 'OCI runtime pause failed');
  }

  async resume(): Promise<void> {
    check(this.state, 'resume');
    try {
      await this.runc.resume(this.id);
    } catch (err) {
      throw runtimeError(err, 'OCI runtime resume failed');
    }
    // The init may have exited meanwhile (and been thawed by afterExit): stopped stays stopped.
    if (this.state.kind === 'paused') this.state = { kind: 'running' };
  }

  /** Apply new resources (OCI LinuxResources JSON, as containerd sends them). */
  async update(resources: Buffer): Promise<void> {
    check(this.state, 'update');
    // runc reads the resources from a file; one of our own naming, removed at once.
    const file = path.join(this.bundle, `.update-${process.pid}-${++updateFileSeq}.json`);
    try {
      fs.writeFileSync(file, resources, { mode: 0o600 });
      await this.runc.update(this.id, file);
    } catch (err) {
      throw runtimeError(err, 'OCI runtime update failed');
    } finally {
      fs.rmSync(file, { force: true });
    }
  }

  async checkpoint(o: CheckpointOptions): Promise<void> {
    check(this.state, 'checkpoint');
    await this.runc.checkpoint(this.id, o);
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
}
