// Terminal stdio: runc creates the pty and sends its master over a unix "console socket"
// (--console-socket, SCM_RIGHTS); the shim copies containerd's stdin fifo into the master and the
// master into the stdout fifo, and resizes it for ResizePty.
//
// The master is read only when the addon reports it readable (never a blocking read on the event
// loop) and reading pauses while the stdout side is full (backpressure). Writes to the master go
// through the threadpool (fs.write), so a container that stops reading its terminal cannot stall
// the event loop, the reaper or other containers.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type { Logger } from '../framework/logger';
import { native, type FdWatch } from '../framework/native';
import { drainedOrQuiet, openDestination, StdinFifo } from './destination';
import type { ProcessIO, StdioPaths } from './io';

/** As the Go shim: runc must connect and send the master within this time. */
const RECEIVE_TIMEOUT_MS = 30_000;

export class ConsoleIO implements ProcessIO {
  readonly childFds: [number, number, number] = [-1, -1, -1];
  private master = -1;
  private stdin: StdinFifo | undefined;
  private closed = false;
  private readonly cleanups: Array<() => void> = [];
  private outputDone!: () => void;
  private readonly output = new Promise<void>((r) => { this.outputDone = r; });
  /** Where the terminal's output goes, and when the last of it was read (drained()'s quiet check). */
  private destination: Writable | undefined;
  private lastOutputAt = 0;

  private constructor(
    private readonly paths: StdioPaths,
    readonly consoleSocket: string,
    private listenFd: number,
    private readonly log: Logger,
  ) {}

  static create(paths: StdioPaths, log: Logger): ConsoleIO {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-pty-'));
    const sock = path.join(dir, 'pty.sock');
    try {
      return new ConsoleIO(paths, sock, native().unixListen(sock), log);
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async afterLaunch(): Promise<void> {
    this.master = await this.receiveMaster();
    this.copyOut();
    this.copyIn();
  }

  /** Accept runc's connection and take the fd it sends; the socket goes away afterwards. */
  private receiveMaster(): Promise<number> {
    const n = native();
    return new Promise<number>((resolve, reject) => {
      let conn = -1;
      let watch: FdWatch | undefined;
      const finish = (err: Error | undefined, fd?: number) => {
        clearTimeout(timer);
        watch?.close();
        if (conn >= 0) n.closeFd(conn);
        this.closeListener();
        if (err) reject(err);
        else resolve(fd!);
      };
      const timer = setTimeout(() => finish(new Error('timed out waiting for the console master from runc')), RECEIVE_TIMEOUT_MS);
      const onConn = (err?: Error) => {
        if (err) return finish(err);
        try {
          const fd = n.recvFd(conn);
          if (fd !== null) finish(undefined, fd);
        } catch (e) {
          finish(e as Error);
        }
      };
      watch = n.watchReadable(this.listenFd, (err) => {
        if (err) return finish(err);
        const c = n.accept(this.listenFd);
        if (c === null) return;
        conn = c;
        watch!.close();
        watch = n.watchReadable(conn, onConn);
      });
    });
  }

  private closeListener(): void {
    if (this.listenFd >= 0) {
      native().closeFd(this.listenFd);
      this.listenFd = -1;
      fs.rmSync(path.dirname(this.consoleSocket), { recursive: true, force: true });
    }
  }

  /** master -> stdout, pausing the read watch while the destination is full. */
  private copyOut(): void {
    if (!this.paths.stdout) {
      this.outputDone();
      return;
    }
    const dst = openDestination(this.paths.stdout);
    this.destination = dst;
    this.cleanups.push(() => dst.destroy());
    dst.on('error', (err) => this.log.debug({ err }, 'terminal output destination failed'));
    dst.once('close', () => this.outputDone());
    const buf = Buffer.allocUnsafe(64 * 1024);
    let watch: FdWatch | undefined;
    const end = () => {
      watch?.close();
      watch = undefined;
      dst.end();
    };
    const onReadable = (err?: Error) => {
      if (err) {
        // Hang-up: the slave side is closed, but what it wrote last is still in the master.
        drainRest();
        return end();
      }
      let n: number;
      try {
        n = fs.readSync(this.master, buf, 0, buf.length, null);
      } catch (e) {
        // EIO: every slave fd is closed (the process and its children are gone): end of output.
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return;
        return end();
      }
      if (n === 0) return end();
      this.lastOutputAt = Date.now();
      if (!dst.write(Buffer.from(buf.subarray(0, n)))) {
        watch?.close();
        watch = undefined;
        dst.once('drain', () => { if (!this.closed) watch = native().watchReadable(this.master, onReadable); });
      }
    };
    const drainRest = () => {
      for (;;) {
        let n: number;
        try {
          n = fs.readSync(this.master, buf, 0, buf.length, null);
        } catch {
          return;
        }
        if (n <= 0) return;
        dst.write(Buffer.from(buf.subarray(0, n)));
      }
    };
    watch = native().watchReadable(this.master, onReadable);
    this.cleanups.push(() => watch?.close());
  }

  /** stdin fifo -> master, in order, through the threadpool. */
  private copyIn(): void {
    if (!this.paths.stdin) return;
    this.stdin = new StdinFifo(this.paths.stdin);
    const reader = this.stdin.reader;
    const master = this.master;
    const writer = new Writable({
      write: (chunk: Buffer, _enc, cb) => writeAll(master, chunk, cb),
    });
    reader.pipe(writer);
    reader.on('error', () => undefined);
    writer.on('error', () => reader.destroy());
    this.cleanups.push(() => reader.destroy());
  }

  /** As PipeIO's: the end of output, or its going quiet with all of it written out, or false after timeoutMs. */
  drained(timeoutMs: number): Promise<boolean> {
    return drainedOrQuiet(this.output, () => this.lastOutputAt, () => (this.destination?.writableLength ?? 0) === 0, timeoutMs);
  }

  closeStdin(): void {
    this.stdin?.close();
  }

  resize(width: number, height: number): void {
    if (this.master < 0) return;
    native().setWinsize(this.master, height, width);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeStdin();
    this.closeListener();
    for (const c of this.cleanups.splice(0)) c();
    if (this.master >= 0) {
      fs.closeSync(this.master);
      this.master = -1;
    }
  }
}

function writeAll(fd: number, chunk: Buffer, cb: (err?: Error | null) => void): void {
  fs.write(fd, chunk, 0, chunk.length, null, (err, written) => {
    if (err) return cb(err);
    if (written < chunk.length) writeAll(fd, chunk.subarray(written), cb);
    else cb();
  });
}
