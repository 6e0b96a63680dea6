// The container's init process: created by `runc create`, reparented to the shim, reaped by pid.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../framework/logger';
import type { Exit } from '../../framework/reaper';
import { runtimeError } from '../errors';
import type { ProcessIO, StdioPaths } from '../io';
import type { Runc } from '../runc';
import { check, exitOf, type ExitInfo, type Operation, type ProcessState } from './state';

/** How long output may keep flowing after the process exited (a background child can hold the pipe forever). */
const DRAIN_TIMEOUT_MS = 2000;
/** How long Delete of a never-started container waits for runc delete's kill of the init to be reaped. */
const CREATED_EXIT_WAIT_MS = 5000;
const SIGKILL = 9;

export interface InitHooks {
  /** Publish TaskStart (called exactly once, before any exit of this process is reported). */
  started(pid: number): void;
  /** Publish TaskExit (called at most once, only after started()). */
  exited(pid: number, exit: ExitInfo): void;
}

export class InitProcess {
  state: ProcessState = { kind: 'created' };
  private waiters: Array<(e: ExitInfo) => void> = [];
  /** Settles once the exit has been fully processed (output drained, event published). */
  private exitHandled: Promise<void> | undefined;
  /** Set once Wait may be answered: the exit is processed. */
  private reported: ExitInfo | undefined;
  private rawExit: Promise<Exit>;

  constructor(
    readonly id: string,
    readonly pid: number,
    readonly bundle: string,
    readonly stdio: StdioPaths,
    private readonly io: ProcessIO,
    private readonly runc: Runc,
    private readonly killAllOnExit: boolean,
    private readonly hooks: InitHooks,
    private readonly log: Logger,
    /** The reaper's claim on this pid; it may already hold the exit (collected before the pid file was read). */
    exit: Promise<Exit>,
  ) {
    this.rawExit = exit;
    void this.rawExit.then((e) => this.onExit({ status: e.status, exitedAt: e.exitedAt }));
  }

  allow(op: Operation): void {
    check(this.state, op);
  }

  async start(): Promise<void> {
    check(this.state, 'start');
    this.state = { kind: 'starting' };
    try {
      await this.runc.start(this.id);
    } catch (err) {
      const held = this.state.kind === 'starting' ? this.state.heldExit : undefined;
      this.state = { kind: 'created' };
      if (held) this.finishExit(held, false);
      throw runtimeError(err, 'OCI runtime start failed');
    }
    const held = this.state.kind === 'starting' ? this.state.heldExit : undefined;
    this.state = { kind: 'running' };
    this.hooks.started(this.pid);
    if (held) this.finishExit(held, true);
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
      if (exit && this.state.kind === 'created') this.finishExit({ status: exit.status, exitedAt: exit.exitedAt }, false);
      await this.exitHandled;
    }
    const exit = exitOf(this.state) ?? { status: 128 + SIGKILL, exitedAt: new Date() };
    this.io.close();
    this.state = { kind: 'deleted', exit };
    this.resolveWaiters(exit);
    return exit;
  }

  wait(): Promise<ExitInfo> {
    if (this.reported) return Promise.resolve(this.reported);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async pids(): Promise<number[]> {
    try {
      return await this.runc.ps(this.id);
    } catch (err) {
      throw runtimeError(err, 'OCI runtime ps failed');
    }
  }

  closeStdin(): void {
    check(this.state, 'closeIO');
    this.io.closeStdin();
  }

  private onExit(exit: ExitInfo): void {
    switch (this.state.kind) {
      case 'starting':
        this.state.heldExit = exit;
        return;
      case 'running':
        this.finishExit(exit, true);
        return;
      case 'created':
        this.finishExit(exit, false);
        return;
      case 'stopped':
      case 'deleted':
        return;
    }
  }

  /** stopped now; output drained, children killed, then Wait answered and TaskExit published (if started). */
  private finishExit(exit: ExitInfo, started: boolean): void {
    this.state = { kind: 'stopped', exit, started };
    this.exitHandled = (async () => {
      if (this.killAllOnExit) {
        // Without its own pid namespace nothing else kills the container's other processes.
        await this.runc.kill(this.id, SIGKILL, true).catch((err) => this.log.debug({ err }, 'kill --all after init exit'));
      }
      const drained = await this.io.drained(DRAIN_TIMEOUT_MS);
      if (!drained) this.log.warn({ id: this.id }, 'output still open after init exit; stopped waiting for it');
      if (started) this.hooks.exited(this.pid, exit);
      this.resolveWaiters(exit);
    })();
  }

  private resolveWaiters(exit: ExitInfo): void {
    this.reported ??= exit;
    for (const w of this.waiters.splice(0)) w(exit);
  }

  static readPidFile(file: string): number {
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`invalid pid in ${path.basename(file)}`);
    return pid;
  }
}
