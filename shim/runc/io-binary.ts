// binary:// stdio: the container's stdout and stderr pipes go straight to a logging binary, as the
// Go shim's NewBinaryIO does: fd 3 = stdout, fd 4 = stderr, fd 5 = a pipe the logger writes to or
// closes once it is ready; argv from the URI query (key, value, ...); CONTAINER_ID and
// CONTAINER_NAMESPACE in its environment. On close it gets SIGTERM to flush, SIGKILL if it lingers.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { native } from '../framework/native';
import type { IOContext, ProcessIO, StdioPaths } from './io';

/** How long the logger may take to get ready, and to exit after SIGTERM (the Go shim allows 12 s). */
const READY_TIMEOUT_MS = 10_000;
const TERM_TIMEOUT_MS = 12_000;

export class BinaryIO implements ProcessIO {
  readonly childFds: [number, number, number];

  private constructor(
    /** Write ends for the container's stdout/stderr (ours until runc has them). */
    private writeEnds: number[],
    private readonly logger: { pid: number; exited: Promise<unknown> },
    private readonly ctx: IOContext,
  ) {
    this.childFds = [-1, writeEnds[0], writeEnds[1]];
  }

  static async create(_paths: StdioPaths, uri: URL, ctx: IOContext): Promise<BinaryIO> {
    const opened: number[] = [];
    try {
      const [outR, outW] = native().pipe();
      opened.push(outR, outW);
      const [errR, errW] = native().pipe();
      opened.push(errR, errW);
      const [readyR, readyW] = native().pipe();
      opened.push(readyR, readyW);
      const args: string[] = [];
      for (const [k, v] of uri.searchParams) args.push(k, v);
      const file = decodeURIComponent(uri.pathname);
      const logger = ctx.reaper.spawn({
        file,
        args: [file, ...args],
        env: [`CONTAINER_ID=${ctx.id}`, `CONTAINER_NAMESPACE=${ctx.namespace}`],
        fds: [-1, -1, -1, outR, errR, readyW],
      });
      // The logger holds the read ends and the ready pipe's write end now.
      for (const fd of [outR, errR, readyW]) fs.closeSync(fd);
      opened.length = 0;
      const io = new BinaryIO([outW, errW], logger, ctx);
      try {
        await waitReady(readyR, logger.exited);
      } catch (err) {
        io.close();
        throw err;
      }
      return io;
    } catch (err) {
      for (const fd of opened) fs.closeSync(fd);
      throw err;
    }
  }

  get consoleSocket(): undefined {
    return undefined;
  }

  async afterLaunch(): Promise<void> {
    // runc (and the container) have their copies; the logger sees EOF when the container's close.
    for (const fd of this.writeEnds) fs.closeSync(fd);
    this.writeEnds = [];
  }

  async drained(): Promise<boolean> {
    return true; // the logger, not the shim, owns the output
  }

  closeStdin(): void {
    /* no stdin with a logging binary */
  }

  resize(): void {
    /* no terminal */
  }

  close(): void {
    for (const fd of this.writeEnds) fs.closeSync(fd);
    this.writeEnds = [];
    const { pid, exited } = this.logger;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return; // already gone
    }
    const timer = setTimeout(() => {
      this.ctx.log.warn({ pid }, 'logging binary did not exit after SIGTERM; killing it');
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }, TERM_TIMEOUT_MS);
    timer.unref();
    void exited.then(() => clearTimeout(timer));
  }
}

/** One byte or EOF on the ready pipe; the logger dying or a timeout first is an error. */
function waitReady(readyFd: number, exited: Promise<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = new net.Socket({ fd: readyFd, readable: true, writable: false });
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error('logging binary did not get ready in time')), READY_TIMEOUT_MS);
    s.once('data', () => done());
    s.once('end', () => done());
    s.once('error', (err) => done(err));
    void exited.then(() => done());
  });
}
