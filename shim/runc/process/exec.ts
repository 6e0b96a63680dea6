// An exec'd process: `runc exec --detach` in a running container, reaped by the pid runc reports.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../../framework/logger';
import type { Reaper } from '../../framework/reaper';
import { Code, TtrpcError } from '../../framework/ttrpc/codes';
import { invalidArgument } from '../errors';
import type { ProcessIO, StdioPaths } from '../io';
import { readPidFile, removePidFile, type RuncApi } from '../runc';
import { testDelay } from '../testhooks';
import { ShimProcess, type LifecycleSink } from './lifecycle';
import { check, exitOf, type ExitInfo, type StateKind } from './state';

let execFileSeq = 0;

/**
 * The process spec runc is given for an exec: containerd's, with `terminal` set from the request.
 * The request's flag decides the stdio (a console socket, or pipes), and runc refuses a console
 * socket for a spec without a terminal ("cannot use console socket if runc will not detach or
 * allocate tty") and a terminal without one: the two must agree, and the Go shim makes them agree
 * the same way (`spec.Terminal = r.Terminal` in its Init.exec), whatever the client put in the spec.
 */
export function execProcessSpec(spec: Buffer, terminal: boolean): Buffer {
  let p: unknown;
  try {
    p = JSON.parse(spec.toString('utf8'));
  } catch (err) {
    throw invalidArgument(`exec process spec is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalidArgument('exec process spec is not a JSON object');
  return Buffer.from(JSON.stringify({ ...p, terminal }));
}

export class ExecProcess extends ShimProcess {
  protected readonly startFailure = 'OCI runtime exec failed';
  protected readonly reportsUnstartedExit = false;

  constructor(
    readonly execId: string,
    readonly containerId: string,
    private readonly bundle: string,
    /** The OCI process spec for runc (JSON bytes): containerd's, through execProcessSpec. */
    private readonly spec: Buffer,
    stdio: StdioPaths,
    io: ProcessIO,
    private readonly runc: RuncApi,
    private readonly reaper: Reaper,
    sink: LifecycleSink,
    log: Logger,
  ) {
    super(execId, stdio, io, sink, log);
  }

  protected async launch(): Promise<void> {
    // Per-exec files get names of our own (exec ids are arbitrary strings) and are removed at once.
    const base = path.join(this.bundle, `.exec-${process.pid}-${++execFileSeq}`);
    const processFile = `${base}.json`;
    const pidFile = `${base}.pid`;
    try {
      fs.writeFileSync(processFile, this.spec, { mode: 0o600 });
      // The exec's exit may be collected before runc exec returns: claim exits from here on.
      const exitsFrom = this.reaper.mark();
      await this.runc.exec(this.containerId, { processFile, pidFile, stdio: this.io.childFds, consoleSocket: this.io.consoleSocket });
      await this.io.afterLaunch();
      await testDelay('AFTER_RUNC_EXEC');
      this.pid = readPidFile(pidFile);
      this.watch(this.reaper.wait(this.pid, exitsFrom));
    } finally {
      fs.rmSync(processFile, { force: true });
      removePidFile(pidFile);
    }
  }

  protected async afterExit(_from: StateKind): Promise<void> {
    await testDelay('EXEC_EXIT');
  }

  async kill(signal: number): Promise<void> {
    check(this.state, 'kill');
    if (this.state.kind !== 'running' || this.pid <= 0) {
      throw new TtrpcError(Code.FailedPrecondition, 'process not created');
    }
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new TtrpcError(Code.NotFound, 'process already finished');
      throw err;
    }
  }

  async delete(): Promise<ExitInfo> {
    check(this.state, 'delete');
    if (this.state.kind === 'stopped') await this.exitHandled;
    return this.markDeleted(exitOf(this.state) ?? { status: 0, exitedAt: new Date(0) });
  }
}
