// The runc (or crun: any binary with runc's CLI) command wrapper. Every invocation goes through the reaper.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { currentEnv, native } from '../framework/native';
import type { Reaper } from '../framework/reaper';
import { RuncError } from './errors';

export const DEFAULT_RUNC_ROOT = '/run/containerd/runc';
const DEFAULT_DEADLINE_MS = 60_000;

export interface RuncConfig {
  binary: string;
  /** --root, already including the namespace. */
  root: string;
  /** Bundle whose log.json receives runc's JSON log. */
  bundle: string;
  reaper: Reaper;
  debug?: boolean;
  systemdCgroup?: boolean;
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

/** What the processes need from the runtime; a fake stands in for it in unit tests. */
export interface RuncApi {
  create(id: string, o: CreateOptions): Promise<void>;
  start(id: string): Promise<void>;
  exec(id: string, o: ExecOptions): Promise<void>;
  kill(id: string, signal: number, all?: boolean): Promise<void>;
  delete(id: string, opts?: { force?: boolean }): Promise<void>;
  ps(id: string): Promise<number[]>;
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

  private globalArgs(): string[] {
    const args = ['--root', this.cfg.root, '--log', this.logPath, '--log-format', 'json'];
    if (this.cfg.debug) args.push('--debug');
    if (this.cfg.systemdCgroup) args.push('--systemd-cgroup');
    return args;
  }

  /** Run one runc command to completion; a failure carries the error runc logged during this call. */
  private async run(args: string[], o: RunOptions = {}): Promise<string> {
    const logOffset = fileSize(this.logPath);
    let outRead = -1;
    let outWrite = -1;
    if (o.captureStdout) [outRead, outWrite] = native().pipe();
    const stdio = o.stdio ?? [-1, outWrite, -1];
    let child;
    try {
      child = this.cfg.reaper.spawn({
        file: this.cfg.binary,
        args: [this.cfg.binary, ...this.globalArgs(), ...args],
        env: currentEnv(),
        fds: stdio,
      });
    } catch (err) {
      if (outRead >= 0) fs.closeSync(outRead);
      throw err;
    } finally {
      // The child has its copy; ours would keep the pipe from ever reaching EOF.
      if (outWrite >= 0) fs.closeSync(outWrite);
    }
    const stdout = outRead >= 0 ? readAll(outRead) : Promise.resolve('');
    const deadline = this.cfg.deadlineMs ?? DEFAULT_DEADLINE_MS;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }, deadline);
    const exit = await child.exited;
    clearTimeout(timer);
    const out = await stdout;
    if (timedOut) {
      throw Object.assign(new Error(`runc ${args[0]} did not finish within ${deadline} ms`), { code: 'ETIMEDOUT' });
    }
    if (exit.status !== 0) throw new RuncError(args[0], exit.status, lastLoggedError(this.logPath, logOffset));
    return out;
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

function readAll(fd: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
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
