// The runc (or crun: any binary with runc's CLI) command wrapper. Every invocation goes through the reaper.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Reaper } from '../framework/reaper';
import { runCommand } from './command';
import { RuncError } from './errors';

export const DEFAULT_RUNC_ROOT = '/run/containerd/runc';
/**
 * How long any one runc invocation may take before it is killed and the request fails with
 * DeadlineExceeded (a hung runtime must not hold a container forever); containerd's environment
 * may set another (RUNCTS_RUNC_DEADLINE_MS).
 */
const DEFAULT_DEADLINE_MS = 60_000;
export const DEADLINE_ENV = 'RUNCTS_RUNC_DEADLINE_MS';

function defaultDeadline(): number {
  const wanted = Number(process.env[DEADLINE_ENV]);
  return Number.isFinite(wanted) && wanted > 0 ? wanted : DEFAULT_DEADLINE_MS;
}

export interface RuncConfig {
  binary: string;
  /** --root, already including the namespace. */
  root: string;
  /** Bundle whose log.json receives runc's JSON log. */
  bundle: string;
  reaper: Reaper;
  debug?: boolean;
  systemdCgroup?: boolean;
  /** criu binary for checkpoint (runc's --criu), from the runtime options. */
  criuPath?: string;
  deadlineMs?: number;
}

export interface CreateOptions {
  bundle: string;
  pidFile: string;
  /** Child fds 0, 1, 2 for runc (and through it, the container); -1 is /dev/null. */
  stdio: [number, number, number];
  noPivot?: boolean;
  noNewKeyring?: boolean;
  consoleSocket?: string;
}

export interface ExecOptions {
  /** The OCI process spec (JSON), written to a file runc reads. */
  processFile: string;
  pidFile: string;
  stdio: [number, number, number];
  consoleSocket?: string;
}

export interface CheckpointOptions {
  imagePath: string;
  workPath: string;
  /** Keep the container running after the dump (not set: criu's dump ends it). */
  leaveRunning: boolean;
  openTcp?: boolean;
  externalUnixSockets?: boolean;
  terminal?: boolean;
  fileLocks?: boolean;
  emptyNamespaces?: string[];
  cgroupsMode?: string;
}

/** What the processes need from the runtime; a fake stands in for it in unit tests. */
export interface RuncApi {
  create(id: string, o: CreateOptions): Promise<void>;
  start(id: string): Promise<void>;
  exec(id: string, o: ExecOptions): Promise<void>;
  kill(id: string, signal: number, all?: boolean): Promise<void>;
  delete(id: string, opts?: { force?: boolean }): Promise<void>;
  ps(id: string): Promise<number[]>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  /** `runc update --resources <file>`: the file holds an OCI LinuxResources JSON. */
  update(id: string, resourcesFile: string): Promise<void>;
  checkpoint(id: string, o: CheckpointOptions): Promise<void>;
}

interface RunOptions {
  stdio?: [number, number, number];
  captureStdout?: boolean;
}

export class Runc implements RuncApi {
  constructor(private readonly cfg: RuncConfig) {}

  static rootFor(root: string | undefined, namespace: string): string {
    return path.join(root || DEFAULT_RUNC_ROOT, namespace);
  }

  get logPath(): string {
    return path.join(this.cfg.bundle, 'log.json');
  }

  async create(id: string, o: CreateOptions): Promise<void> {
    const args = ['create', '--bundle', o.bundle, '--pid-file', o.pidFile];
    if (o.noPivot) args.push('--no-pivot');
    if (o.noNewKeyring) args.push('--no-new-keyring');
    if (o.consoleSocket) args.push('--console-socket', o.consoleSocket);
    args.push(id);
    await this.run(args, { stdio: o.stdio });
  }

  async start(id: string): Promise<void> {
    await this.run(['start', id]);
  }

  async exec(id: string, o: ExecOptions): Promise<void> {
    const args = ['exec', '--detach', '--pid-file', o.pidFile, '--process', o.processFile];
    if (o.consoleSocket) args.push('--console-socket', o.consoleSocket);
    args.push(id);
    await this.run(args, { stdio: o.stdio });
  }

  async kill(id: string, signal: number, all = false): Promise<void> {
    await this.run(all ? ['kill', '--all', id, String(signal)] : ['kill', id, String(signal)]);
  }

  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.run(opts.force ? ['delete', '--force', id] : ['delete', id]);
  }

  async ps(id: string): Promise<number[]> {
    const out = await this.run(['ps', '--format', 'json', id], { captureStdout: true });
    const pids = JSON.parse(out || '[]') as number[] | null;
    return pids ?? [];
  }

  async pause(id: string): Promise<void> {
    await this.run(['pause', id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(['resume', id]);
  }

  async update(id: string, resourcesFile: string): Promise<void> {
    await this.run(['update', '--resources', resourcesFile, id]);
  }

  async checkpoint(id: string, o: CheckpointOptions): Promise<void> {
    const args = ['checkpoint', '--image-path', o.imagePath, '--work-path', o.workPath];
    if (o.leaveRunning) args.push('--leave-running');
    if (o.openTcp) args.push('--tcp-established');
    if (o.externalUnixSockets) args.push('--ext-unix-sk');
    if (o.terminal) args.push('--shell-job');
    if (o.fileLocks) args.push('--file-locks');
    for (const ns of o.emptyNamespaces ?? []) args.push('--empty-ns', ns);
    if (o.cgroupsMode) args.push('--manage-cgroups-mode', o.cgroupsMode);
    args.push(id);
    await this.run(args);
  }

  private globalArgs(): string[] {
    const args = ['--root', this.cfg.root, '--log', this.logPath, '--log-format', 'json'];
    if (this.cfg.debug) args.push('--debug');
    if (this.cfg.systemdCgroup) args.push('--systemd-cgroup');
    if (this.cfg.criuPath) args.push('--criu', this.cfg.criuPath);
    return args;
  }

  /** Run one runc command to completion; a failure carries the error runc logged during this call. */
  private async run(args: string[], o: RunOptions = {}): Promise<string> {
    const logOffset = fileSize(this.logPath);
    const deadline = this.cfg.deadlineMs ?? defaultDeadline();
    let r;
    try {
      r = await runCommand(this.cfg.reaper, {
        file: this.cfg.binary,
        args: [...this.globalArgs(), ...args],
        stdio: o.stdio,
        capture: o.captureStdout ? 'stdout' : undefined,
        deadlineMs: deadline,
      });
    } catch (err) {
      // The runtime never ran (BinaryName names no executable, ...): say which binary, and keep it a
      // runtime failure (Unknown, as the Go shim's exec error), not an errno code: ENOENT is not the
      // caller's container being NotFound.
      throw new RuncError(args[0], -1, `cannot run the runtime binary ${this.cfg.binary}: ${(err as Error).message}`);
    }
    if (r.timedOut) {
      throw Object.assign(new Error(`runc ${args[0]} did not finish within ${deadline} ms`), { code: 'ETIMEDOUT' });
    }
    if (r.status !== 0) throw new RuncError(args[0], r.status, lastLoggedError(this.logPath, logOffset));
    return r.output;
  }
}

/**
 * Remove a --pid-file and runc's temporary for it (`.<name>` beside it, opened O_EXCL): runc leaves
 * the temporary behind when writing it fails (a full disk), and every later create with that pid
 * file fails on it.
 */
export function removePidFile(file: string): void {
  for (const f of [file, path.join(path.dirname(file), `.${path.basename(file)}`)]) {
    try {
      fs.rmSync(f, { force: true });
    } catch {
      /* a read-only bundle: nothing was written there either */
    }
  }
}

/** The pid runc wrote with --pid-file (runc renames it into place, so it is complete when present). */
export function readPidFile(file: string): number {
  const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`invalid pid in ${path.basename(file)}`);
  return pid;
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

/** The last error-level message runc wrote to its JSON log after `offset`. */
export function lastLoggedError(logPath: string, offset: number): string {
  let text: string;
  try {
    const fd = fs.openSync(logPath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - offset));
      fs.readSync(fd, buf, 0, buf.length, offset);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
  let msg = '';
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === 'error' && entry.msg) msg = entry.msg;
    } catch {
      /* a partial or foreign line */
    }
  }
  return msg;
}
