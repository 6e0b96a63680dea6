// stdio helpers for the integration tests: random blobs with known hashes (bind-mounted into
// containers), ctr processes whose output is hashed while it streams (never buffered whole),
// shim RSS sampling, a pty driver (python3's pty module) for `ctr -t`, and a binary:// logger.
import { ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { Containerd } from './containerd';
import { fixturesDir } from './fixtures';
import { sleep } from './proc';

// ---------------------------------------------------------------------------------------------
// Blobs

/** Where blobs appear inside a container started with `blobMountArgs()`. */
export const BLOB_MOUNT_POINT = '/data';

export interface Blob {
  /** Host path. */
  path: string;
  /** Path inside a container started with blobMountArgs(). */
  containerPath: string;
  size: number;
  /** sha256 hex of the whole blob. */
  sha256: string;
}

const blobs = new Map<number, Blob>();

/** The host directory that holds the blobs (bind-mounted read-only into containers). */
export function blobDir(): string {
  const d = path.join(fixturesDir(), 'blobs');
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/**
 * A file of `size` random bytes with its sha256, created once per test process. Random, not a
 * repeated pattern: a chunk lost, duplicated or reordered anywhere changes the hash.
 */
export function randomBlob(size: number): Blob {
  const cached = blobs.get(size);
  if (cached) return cached;
  const file = path.join(blobDir(), `blob-${size}`);
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(`${file}.tmp`, 'w');
  try {
    const chunk = 4 << 20;
    for (let off = 0; off < size; off += chunk) {
      const b = crypto.randomBytes(Math.min(chunk, size - off));
      hash.update(b);
      fs.writeSync(fd, b);
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(`${file}.tmp`, file);
  const blob: Blob = { path: file, containerPath: `${BLOB_MOUNT_POINT}/blob-${size}`, size, sha256: hash.digest('hex') };
  blobs.set(size, blob);
  return blob;
}

/** `ctr run` arguments that bind-mount the blob directory read-only at /data. */
export function blobMountArgs(): string[] {
  return ['--mount', `type=bind,src=${blobDir()},dst=${BLOB_MOUNT_POINT},options=rbind:ro`];
}

export function sha256Hex(data: string | Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Streaming ctr

/** What arrived on one stream: byte count and sha256, plus the first bytes as text. */
export interface StreamDigest {
  bytes: number;
  sha256: string;
  /** Up to `keep` bytes from the start, for messages and small outputs. */
  head: string;
}

/** Hashes a stream as it flows; keeps only the first `keep` bytes. */
export class StreamHasher {
  private readonly hash = crypto.createHash('sha256');
  private readonly headBufs: Buffer[] = [];
  private headLen = 0;
  bytes = 0;
  /** Called for every chunk after it is counted (for pausing, waiting for markers, ...). */
  onChunk: ((chunk: Buffer, h: StreamHasher) => void) | undefined;
  private readonly waiters: { test: () => boolean; resolve: () => void }[] = [];

  constructor(readonly keep = 64 * 1024) {}

  update(b: Buffer): void {
    this.hash.update(b);
    this.bytes += b.length;
    if (this.headLen < this.keep) {
      const part = b.subarray(0, this.keep - this.headLen);
      this.headBufs.push(Buffer.from(part));
      this.headLen += part.length;
    }
    this.onChunk?.(b, this);
    for (const w of [...this.waiters]) {
      if (w.test()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  /** The kept head as text. */
  get head(): string {
    return Buffer.concat(this.headBufs).toString('utf8');
  }

  /** Resolves true once the kept head matches (or contains) `what`; false after ms. */
  waitForHead(what: RegExp | string, ms: number): Promise<boolean> {
    const test = (): boolean => (typeof what === 'string' ? this.head.includes(what) : what.test(this.head));
    if (test()) return Promise.resolve(true);
    return new Promise(resolve => {
      const w = { test, resolve: () => { clearTimeout(timer); resolve(true); } };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      }, ms);
      this.waiters.push(w);
    });
  }

  digest(): StreamDigest {
    return { bytes: this.bytes, sha256: this.hash.copy().digest('hex'), head: this.head };
  }
}

export interface StreamingResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  stdout: StreamDigest;
  stderr: StreamDigest;
  command: string;
}

export interface StreamingOptions {
  /** SIGKILL after this long (default 120 s). */
  timeoutMs?: number;
  /** Give the child a stdin pipe (default: stdin is /dev/null). */
  stdin?: boolean;
  /** Bytes of each stream kept as text (default 64 KiB). */
  keep?: number;
}

/**
 * A child process whose stdout and stderr are hashed while they stream. The caller may pause
 * and resume reading stdout (a slow reader), write stdin, and wait for markers in the output.
 */
export class StreamingProcess {
  readonly child: ChildProcess;
  readonly stdout: StreamHasher;
  readonly stderr: StreamHasher;
  readonly command: string;
  readonly started = process.hrtime.bigint();
  /** hrtime (ms since start) of the first and the last stdout byte. */
  firstStdoutMs: number | undefined;
  lastStdoutMs: number | undefined;
  private readonly done: Promise<StreamingResult>;
  private timedOut = false;

  constructor(cmd: string, args: readonly string[], opts: StreamingOptions = {}) {
    this.command = [cmd, ...args].map(a => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
    this.stdout = new StreamHasher(opts.keep);
    this.stderr = new StreamHasher(opts.keep);
    this.child = spawn(cmd, [...args], { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    this.child.stdin?.on('error', () => undefined);
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    this.child.stdout!.on('data', (b: Buffer) => {
      const now = this.elapsedMs();
      this.firstStdoutMs ??= now;
      this.lastStdoutMs = now;
      this.stdout.update(b);
    });
    this.child.stderr!.on('data', (b: Buffer) => this.stderr.update(b));
    this.done = new Promise(resolve => {
      let settled = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({
          code,
          signal,
          timedOut: this.timedOut,
          durationMs: this.elapsedMs(),
          stdout: this.stdout.digest(),
          stderr: this.stderr.digest(),
          command: this.command,
        });
      };
      this.child.on('error', () => finish(null, null));
      this.child.on('close', (code, signal) => finish(code, signal));
    });
  }

  elapsedMs(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e6;
  }

  /** Stop reading stdout: the child blocks once the pipe is full (backpressure). */
  pauseStdout(): void {
    this.child.stdout!.pause();
  }

  resumeStdout(): void {
    this.child.stdout!.resume();
  }

  /** Write to stdin, resolving once the data is handed to the pipe (respects backpressure). */
  write(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.child.stdin!.write(data, err => (err ? reject(err) : resolve()));
    });
  }

  /** Close stdin (EOF for the child). */
  endStdin(): void {
    this.child.stdin!.end();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }

  result(): Promise<StreamingResult> {
    return this.done;
  }
}

/** `ctr --address <cd> -n <ns> ...args` as a StreamingProcess. */
export function streamCtr(cd: Containerd, args: readonly string[], opts: StreamingOptions = {}): StreamingProcess {
  return new StreamingProcess(cd.ctrPath, ['--address', cd.address, '-n', cd.namespace, ...args], opts);
}

/**
 * Feed `input` to the stdin of `ctr ...args` (a container that prints "ready" on stderr once it
 * runs, then copies stdin to stdout) and close it. ctr (1.6 at least) closes the task's stdin
 * only through a closer it installs after the task (or exec) is created, and an EOF that comes
 * before loses that closer (ctr then never closes stdin and cat never exits): so the input is
 * written only once "ready" arrived, in several writes, as a pipe would deliver them.
 * ready: false (and the process killed) when "ready" did not come within 15 s.
 */
export async function feedStdin(cd: Containerd, args: readonly string[], input: Buffer): Promise<{ ready: boolean; result: StreamingResult }> {
  const p = streamCtr(cd, args, { stdin: true, timeoutMs: 30_000 });
  const ready = await p.stderr.waitForHead('ready\n', 15_000);
  if (!ready) {
    p.kill();
    return { ready, result: await p.result() };
  }
  for (let off = 0; off < input.length; off += 100_000) await p.write(input.subarray(off, off + 100_000));
  p.endStdin();
  return { ready, result: await p.result() };
}

/** A StreamingResult for assertion messages (heads only). */
export function describeStreaming(r: StreamingResult): string {
  const how = r.timedOut ? `TIMED OUT after ${Math.round(r.durationMs)} ms` : r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
  const show = (d: StreamDigest): string => `${d.bytes} bytes, sha256 ${d.sha256}, head ${JSON.stringify(d.head.slice(0, 400))}`;
  return `${r.command}: ${how} after ${Math.round(r.durationMs)} ms\nstdout: ${show(r.stdout)}\nstderr: ${show(r.stderr)}`;
}

// ---------------------------------------------------------------------------------------------
// Shim memory

/**
 * The live shim daemon serving container `id`: its argv carries `-id <id>` and, unlike the
 * short-lived `start` / `delete` invocations with the same flags, no action at the end.
 */
export function shimPidFor(cd: Containerd, id: string): number | undefined {
  return cd
    .shims()
    .find(p => p.argv.some((a, i) => a === '-id' && p.argv[i + 1] === id) && !['start', 'delete'].includes(p.argv[p.argv.length - 1]!))?.pid;
}

/** VmRSS of pid in KiB, undefined when it is gone. */
export function vmRssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface RssSample {
  /** ms since the sampler started. */
  atMs: number;
  kib: number;
}

/** Samples a process's VmRSS every intervalMs until stopped (or the process is gone). */
export class RssSampler {
  readonly samples: RssSample[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly t0 = Date.now();

  constructor(readonly pid: number, intervalMs = 100) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const kib = vmRssKiB(this.pid);
    if (kib !== undefined) this.samples.push({ atMs: Date.now() - this.t0, kib });
  }

  /** The samples taken so far; later samples keep coming until stop(). */
  maxKiB(fromMs = 0): number {
    return Math.max(0, ...this.samples.filter(s => s.atMs >= fromMs).map(s => s.kib));
  }

  stop(): RssSample[] {
    clearInterval(this.timer);
    this.sample();
    return this.samples;
  }
}

// ---------------------------------------------------------------------------------------------
// A real pty for `ctr run -t` / `ctr task exec -t`

// python3 driver: opens a pty, sets its size, runs argv with the pty as controlling terminal and
// stdio, relays our stdin to the master and the master to our stdout. Lines on fd 3
// ("winsize ROWS COLS") resize the pty (the kernel sends SIGWINCH to its foreground group). Exits
// with the child's exit code (128+signal when signalled).
const PTY_DRIVER = String.raw`
import errno, fcntl, os, select, struct, sys, termios
rows, cols = int(sys.argv[1]), int(sys.argv[2])
argv = sys.argv[3:]
def setsize(fd, r, c):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', r, c, 0, 0))
master, slave = os.openpty()
setsize(slave, rows, cols)
pid = os.fork()
if pid == 0:
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.closerange(3, 1024)
    os.execvp(argv[0], argv)
os.close(slave)
ctl = 3
try:
    os.fstat(ctl)
except OSError:
    ctl = None
inputs = [0] + ([ctl] if ctl is not None else [])
ctlbuf = b''
def writeall(fd, b):
    while b:
        n = os.write(fd, b)
        b = b[n:]
while True:
    r, _, _ = select.select([master] + inputs, [], [])
    if master in r:
        try:
            b = os.read(master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:
                break
            raise
        if not b:
            break
        writeall(1, b)
    if 0 in r:
        b = os.read(0, 65536)
        if not b:
            inputs.remove(0)
        else:
            writeall(master, b)
    if ctl is not None and ctl in r:
        b = os.read(ctl, 4096)
        if not b:
            inputs.remove(ctl)
        ctlbuf += b
        while b'\n' in ctlbuf:
            line, ctlbuf = ctlbuf.split(b'\n', 1)
            f = line.split()
            if len(f) == 3 and f[0] == b'winsize':
                setsize(master, int(f[1]), int(f[2]))
_, status = os.waitpid(pid, 0)
if os.WIFEXITED(status):
    sys.exit(os.WEXITSTATUS(status))
sys.exit(128 + os.WTERMSIG(status))
`;

export interface PtyResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Everything the pty master produced. */
  output: string;
}

/** A command running on a real pty of rows x cols (python3 pty driver). */
export class PtyProcess {
  readonly child: ChildProcess;
  private out = '';
  private readonly done: Promise<PtyResult>;
  private timedOut = false;
  private readonly listeners = new Set<() => void>();

  constructor(argv: readonly string[], opts: { rows: number; cols: number; timeoutMs?: number }) {
    this.child = spawn('python3', ['-c', PTY_DRIVER, String(opts.rows), String(opts.cols), ...argv], {
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
    });
    this.child.stdin!.on('error', () => undefined);
    const ctl = this.child.stdio[3] as NodeJS.WritableStream | null;
    ctl?.on('error', () => undefined);
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    const onData = (b: Buffer): void => {
      this.out += b.toString('utf8');
      for (const l of [...this.listeners]) l();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.done = new Promise(resolve => {
      let settled = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ code, signal, timedOut: this.timedOut, output: this.out });
      };
      this.child.on('error', () => finish(null, null));
      this.child.on('close', (code, signal) => finish(code, signal));
    });
  }

  /** The pty output so far. */
  get output(): string {
    return this.out;
  }

  /** Type into the pty. */
  type(s: string): void {
    this.child.stdin!.write(s);
  }

  /** Resize the pty (the kernel sends SIGWINCH to ctr, which forwards the size). */
  resize(rows: number, cols: number): void {
    (this.child.stdio[3] as NodeJS.WritableStream).write(`winsize ${rows} ${cols}\n`);
  }

  /**
   * Wait until the output after position `from` matches; resolves the match end position
   * (to continue from), or undefined after ms.
   */
  waitFor(what: RegExp | string, ms: number, from = 0): Promise<number | undefined> {
    const test = (): number | undefined => {
      const rest = this.out.slice(from);
      if (typeof what === 'string') {
        const i = rest.indexOf(what);
        return i < 0 ? undefined : from + i + what.length;
      }
      const m = what.exec(rest);
      return m ? from + m.index + m[0].length : undefined;
    };
    const now = test();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise(resolve => {
      const l = (): void => {
        const v = test();
        if (v !== undefined) {
          this.listeners.delete(l);
          clearTimeout(timer);
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(l);
        resolve(undefined);
      }, ms);
      this.listeners.add(l);
    });
  }

  /** Close the pty driver's stdin (the pty itself stays open). */
  end(): void {
    this.child.stdin!.end();
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }

  result(): Promise<PtyResult> {
    return this.done;
  }
}

/** `ctr --address <cd> -n <ns> ...args` on a pty of rows x cols. */
export function ptyCtr(cd: Containerd, args: readonly string[], opts: { rows: number; cols: number; timeoutMs?: number }): PtyProcess {
  return new PtyProcess([cd.ctrPath, '--address', cd.address, '-n', cd.namespace, ...args], opts);
}

// ---------------------------------------------------------------------------------------------
// A binary:// logger

// The logger containerd's shims start for `--log-uri binary:///path?k=v`: stdout on fd 3,
// stderr on fd 4, readiness by writing to (and closing) fd 5. It records argv, environment, cwd
// and its open fds in <dir>/<CONTAINER_ID>/info.json, copies fd 3 and fd 4 to stdout.bin and
// stderr.bin until EOF, then writes done.json with the byte counts. It ignores SIGTERM: the Go
// shim closes the pipes and then sends SIGTERM, and a logger must get to read everything first.
const BINARY_LOGGER = String.raw`#!/usr/bin/python3
import json, os, signal, sys, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)
base = os.path.dirname(os.path.abspath(sys.argv[0]))
d = os.path.join(base, os.environ.get('CONTAINER_ID', 'no-container-id'))
os.makedirs(d, exist_ok=True)
def publish(name, obj):
    tmp = os.path.join(d, name + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(obj, f)
    os.rename(tmp, os.path.join(d, name))
fds = {}
for fd in os.listdir('/proc/self/fd'):
    try:
        fds[fd] = os.readlink('/proc/self/fd/' + fd)
    except OSError:
        pass
publish('info.json', {'argv': sys.argv[1:], 'env': dict(os.environ), 'cwd': os.getcwd(), 'fds': fds})
os.write(5, b'r')
os.close(5)
counts = {}
def pump(fd, name):
    n = 0
    with open(os.path.join(d, name), 'wb') as f:
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            f.write(b)
            n += len(b)
    counts[name] = n
ts = [threading.Thread(target=pump, args=(3, 'stdout.bin')), threading.Thread(target=pump, args=(4, 'stderr.bin'))]
for t in ts:
    t.start()
for t in ts:
    t.join()
publish('done.json', counts)
`;

export interface BinaryLoggerInfo {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** fd number → readlink of /proc/self/fd/<fd> at start. */
  fds: Record<string, string>;
}

/** Write the logger script into dir (mode 0755) and return its path. */
export function writeBinaryLogger(dir: string): string {
  const p = path.join(dir, 'logger.py');
  fs.writeFileSync(p, BINARY_LOGGER, { mode: 0o755 });
  return p;
}

export interface BinaryLoggerOutput {
  info: BinaryLoggerInfo | undefined;
  /** Byte counts once the logger saw EOF on both fds; undefined while it still runs. */
  done: Record<string, number> | undefined;
  stdout: Buffer;
  stderr: Buffer;
}

/** What the logger in dir recorded for container id (waits up to ms for done.json). */
export async function binaryLoggerOutput(dir: string, id: string, ms = 15_000): Promise<BinaryLoggerOutput> {
  const d = path.join(dir, id);
  const readJson = <T>(name: string): T | undefined => {
    try {
      return JSON.parse(fs.readFileSync(path.join(d, name), 'utf8')) as T;
    } catch {
      return undefined;
    }
  };
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !fs.existsSync(path.join(d, 'done.json'))) await sleep(50);
  const read = (name: string): Buffer => {
    try {
      return fs.readFileSync(path.join(d, name));
    } catch {
      return Buffer.alloc(0);
    }
  };
  return {
    info: readJson<BinaryLoggerInfo>('info.json'),
    done: readJson<Record<string, number>>('done.json'),
    stdout: read('stdout.bin'),
    stderr: read('stderr.bin'),
  };
}
