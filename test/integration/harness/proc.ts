// Process helpers for the integration tests: run a command with a hard timeout, inspect /proc.
//
// Test processes may use child_process (only the shim may not). Every child gets a timeout so
// that a hung shim fails a test instead of hanging CI.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** SIGKILL the child after this long (default 60 s). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface RunResult {
  /** Exit code, or null when the child was killed by a signal (timeouts included). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
  /** The command line, for messages. */
  command: string;
}

export const DEFAULT_TIMEOUT_MS = 60_000;
/** After a timeout's kill, how long run() still waits for the pipes to close. */
const GRACE_AFTER_KILL_MS = 1000;

/** Run a command to completion (or timeout). Never rejects for a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const command = [cmd, ...args].map(a => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  const started = process.hrtime.bigint();
  return new Promise<RunResult>(resolve => {
    const child = spawn(cmd, [...args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      // A grandchild may keep the pipes open after the child is gone ('close' would never come):
      // stop waiting for them shortly after the kill. A timed-out run has no exit code.
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(null, 'SIGKILL', '\n(timed out; the pipes were still held open)');
      }, GRACE_AFTER_KILL_MS);
    }, timeoutMs);
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const finish = (code: number | null, signal: NodeJS.Signals | null, extra = ''): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + extra,
        timedOut,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        command,
      });
    };
    child.on('error', e => finish(null, null, `spawn error: ${e.message}`));
    // 'close' waits for stdio to end as well; a grandchild that keeps the pipes open would hold
    // it: the timeout above covers that case.
    child.on('close', (code, signal) => finish(code, signal));
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(opts.input);
    }
  });
}

/** Like run(), but throws with the command's output when it does not exit 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`command failed: ${describeResult(r)}`);
  return r;
}

/** One-paragraph description of a result, for assertion messages. */
export function describeResult(r: RunResult): string {
  const how = r.timedOut ? `TIMED OUT after ${Math.round(r.durationMs)} ms` : r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
  return `${r.command}: ${how}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise(res => setTimeout(res, ms));
}

/**
 * Poll fn until it returns a truthy value or the timeout passes. Returns the last value
 * (falsy on timeout).
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  const interval = opts.intervalMs ?? 50;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await sleep(interval);
  }
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  /** State letter from /proc/<pid>/stat: R, S, D, Z, ... */
  state: string;
  /** argv; empty for zombies and kernel threads. */
  argv: string[];
  /** Session id (a daemon that called setsid leads its own: sid === pid). */
  sid: number;
}

/** Read one process from /proc; undefined when it is gone. */
export function readProcess(pid: number): ProcInfo | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: the fields after the last ')' are fixed.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const argv = cmdline.length ? cmdline.replace(/\0$/, '').split('\0') : [];
    return { pid, state: rest[0]!, ppid: Number(rest[1]), sid: Number(rest[3]), argv };
  } catch {
    return undefined;
  }
}

/** All processes visible in /proc (zombies and kernel threads included, with empty argv). */
export function listProcesses(): ProcInfo[] {
  const procs: ProcInfo[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProcess(Number(name));
    if (p) procs.push(p);
  }
  return procs;
}

/** True while pid names a live (non-zombie) process. */
export function isAlive(pid: number): boolean {
  const p = readProcess(pid);
  return p !== undefined && p.state !== 'Z' && p.state !== 'X';
}

/** Paths of the unix sockets a process has open (bound sockets only: those have a path). */
export function unixSocketPathsOf(pid: number): string[] {
  const inodes = new Set<string>();
  let fds: string[] = [];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // fd closed meanwhile
    }
  }
  if (inodes.size === 0) return [];
  const paths: string[] = [];
  // /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path
  for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && inodes.has(f[6]!)) paths.push(f.slice(7).join(' '));
  }
  return paths;
}

/** Mount points (unescaped) from /proc/self/mountinfo. */
export function mountPoints(): string[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map(l => unescape(l.split(' ')[4]!));
}

/** Mount points at or below dir. */
export function mountsUnder(dir: string): string[] {
  const d = dir.replace(/\/+$/, '');
  return mountPoints().filter(m => m === d || m.startsWith(d + '/'));
}

/** Resolve with p's value, or with undefined after ms; the timer is cleared either way. */
export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<undefined>(res => {
    timer = setTimeout(() => res(undefined), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
