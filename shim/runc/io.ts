// A process's stdio, chosen by the stdout URI scheme in one factory (as the Go shim's createIO):
// a plain path (containerd's fifos, or a file) and `file://` are copied through pipes by PipeIO;
// `binary://` hands the pipes to a logging binary (io-binary.ts); a terminal is a pty whose master
// runc sends over a console socket (console.ts).
//
// PipeIO: the container writes into pipes we own, never into containerd's fifos directly, so it
// keeps running when containerd (and the fifo readers) go away. Copies use stream piping: a slow
// reader stalls the pipe, which stalls the container (backpressure, DESIGN lesson 4); EOF is always
// propagated.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { pipeline, type Readable, type Writable } from 'node:stream';
import * as path from 'node:path';
import type { Logger } from '../framework/logger';
import { native } from '../framework/native';
import type { Reaper } from '../framework/reaper';
import { ConsoleIO } from './console';
import { drainedOrQuiet, openDestination, StdinFifo } from './destination';
import { invalidArgument } from './errors';
import { BinaryIO } from './io-binary';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

interface Sink {
  stream: Writable;
  refs: number;
  finished: Promise<void>;
}

/** Resolves once everything written was flushed (or the stream failed: nothing more will arrive). */
function finished(w: Writable): Promise<void> {
  return new Promise((resolve) => {
    w.once('finish', () => resolve());
    w.once('error', () => resolve());
    w.once('close', () => resolve());
  });
}


/** What a process needs from its stdio, whatever carries it. */
export interface ProcessIO {
  /** Child-side fds for runc: [stdin, stdout, stderr]; -1 is /dev/null. */
  readonly childFds: [number, number, number];
  /** runc's --console-socket, when the process has a terminal. */
  readonly consoleSocket?: string;
  /** runc create/exec returned: drop our copies of the child ends and start moving data. */
  afterLaunch(): Promise<void>;
  /** stdout/stderr reached EOF and were flushed (true), or `timeoutMs` passed (false). */
  drained(timeoutMs: number): Promise<boolean>;
  /** CloseIO: the process sees EOF on stdin once containerd's writer is gone too. */
  closeStdin(): void;
  /** ResizePty; a process without a terminal ignores it (as the Go shim). */
  resize(width: number, height: number): void;
  close(): void;
}

export interface IOContext {
  /** Container id (binary:// loggers get it as CONTAINER_ID). */
  id: string;
  namespace: string;
  reaper: Reaper;
  log: Logger;
  /** IoUid/IoGid of the runtime options: who owns the pipes the process reads and writes. */
  owner?: PipeOwner;
}

export interface PipeOwner {
  uid: number;
  gid: number;
}

/** The one factory: terminal, else by the stdout URI's scheme. */
export async function createIO(paths: StdioPaths, ctx: IOContext): Promise<ProcessIO> {
  if (paths.terminal) return ConsoleIO.create(paths, ctx.log);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(paths.stdout)?.[1]?.toLowerCase() ?? 'fifo';
  switch (scheme) {
    case 'fifo':
      return PipeIO.create(paths, ctx.owner);
    case 'file': {
      // Both streams appended to one file, as the Go shim does.
      const file = new URL(paths.stdout).pathname;
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
      return PipeIO.create({ ...paths, stdout: file, stderr: file }, ctx.owner);
    }
    case 'binary':
      return BinaryIO.create(paths, new URL(paths.stdout), ctx);
    default:
      throw invalidArgument(`unknown STDIO scheme ${scheme}`);
  }
}

export class PipeIO implements ProcessIO {
  /** Child-side fds for runc: [stdin, stdout, stderr]; -1 is /dev/null. */
  readonly childFds: [number, number, number] = [-1, -1, -1];
  /** Our ends of the pipes. */
  private readonly parentFds: [number, number, number] = [-1, -1, -1];
  private copies: Promise<void>[] = [];
  private streams: Array<Readable | Writable> = [];
  /** Where stdout and stderr go, for the quiet check of drained(). */
  private sinks: Writable[] = [];
  /** When the last output was read from the process's pipes (ms since the epoch). */
  private lastOutputAt = 0;
  private stdin: StdinFifo | undefined;

  private constructor(readonly paths: StdioPaths) {}

  static create(paths: StdioPaths, owner?: PipeOwner): PipeIO {
    const io = new PipeIO(paths);
    try {
      if (paths.stdin) [io.childFds[0], io.parentFds[0]] = native().pipe();
      if (paths.stdout) [io.parentFds[1], io.childFds[1]] = native().pipe();
      if (paths.stderr) [io.parentFds[2], io.childFds[2]] = native().pipe();
      // As the Go shim (go-runc's NewPipeIO): a process running as another user, e.g. mapped in a
      // user namespace, can then reopen its stdio through /proc/self/fd.
      if (owner) for (const fd of io.childFds) if (fd >= 0) fs.fchownSync(fd, owner.uid, owner.gid);
    } catch (err) {
      io.close();
      throw err;
    }
    return io;
  }

  /** After runc has its copies: close ours of the child ends, or EOF would never come. */
  closeChildEnds(): void {
    for (let i = 0; i < 3; i++) {
      if (this.childFds[i] >= 0) fs.closeSync(this.childFds[i]);
      this.childFds[i] = -1;
    }
  }

  async afterLaunch(): Promise<void> {
    this.closeChildEnds();
    this.startCopy();
  }

  resize(): void {
    /* no terminal: nothing to resize */
  }

  /** Start copying between containerd's paths and the pipes. */
  startCopy(): void {
    const [inFd, outFd, errFd] = this.parentFds;
    this.parentFds.fill(-1);
    const sinks = new Map<string, Sink>();
    const sinkFor = (p: string): Sink => {
      // stdout and stderr may name one regular file: one stream, ended by the last of the two.
      let sink = sinks.get(p);
      if (!sink) {
        const stream = openDestination(p);
        sink = { stream, refs: 0, finished: finished(stream) };
        sinks.set(p, sink);
        this.streams.push(stream);
        this.sinks.push(stream);
        this.copies.push(sink.finished);
      }
      sink.refs++;
      return sink;
    };
    if (outFd >= 0) this.copy(new net.Socket({ fd: outFd, readable: true, writable: false }), sinkFor(this.paths.stdout));
    if (errFd >= 0) this.copy(new net.Socket({ fd: errFd, readable: true, writable: false }), sinkFor(this.paths.stderr));
    if (inFd >= 0) {
      this.stdin = new StdinFifo(this.paths.stdin);
      const reader = this.stdin.reader;
      const writer = new net.Socket({ fd: inFd, readable: false, writable: true });
      this.streams.push(reader, writer);
      pipeline(reader, writer, () => { /* EPIPE when the process is gone: nothing to deliver to */ });
    }
  }

  private copy(src: Readable, sink: Sink): void {
    this.streams.push(src);
    src.on('data', () => { this.lastOutputAt = Date.now(); });
    // pipe() pauses the source while the sink is full: backpressure reaches the container.
    src.pipe(sink.stream, { end: false });
    const release = () => {
      if (--sink.refs === 0) sink.stream.end();
    };
    src.once('end', release);
    src.once('error', release);
    // A sink that fails cannot take more: close the pipe so the writer gets EPIPE rather than blocking.
    sink.stream.once('error', () => src.destroy());
  }

  /**
   * After the exit: resolves when stdout and stderr reached EOF and were flushed, or when they
   * went quiet — nothing read for a while and every sink flushed (drainedOrQuiet), so what the process wrote
   * before it exited is out even though a background child of it holds the pipe (`sh -c "sleep 60
   * & echo ok"`) — or false after `timeoutMs` (a reader too slow to take it all). The copy goes on
   * either way until the process is deleted.
   */
  async drained(timeoutMs: number): Promise<boolean> {
    if (this.copies.length === 0) return true;
    return drainedOrQuiet(Promise.all(this.copies), () => this.lastOutputAt, () => this.sinks.every((w) => w.writableLength === 0), timeoutMs);
  }

  closeStdin(): void {
    this.stdin?.close();
  }

  close(): void {
    this.closeStdin();
    for (const fds of [this.childFds, this.parentFds]) {
      for (let i = 0; i < 3; i++) {
        if (fds[i] >= 0) fs.closeSync(fds[i]);
        fds[i] = -1;
      }
    }
    for (const s of this.streams) s.destroy();
    this.streams = [];
  }
}
