// Where a process's output goes: containerd's fifo, or a plain file (appended to).
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Writable } from 'node:stream';

/** Open `p` for the shim to copy output into, without ever blocking the event loop. */
export function openDestination(p: string): Writable {
  let fifo = false;
  try {
    fifo = fs.statSync(p).isFIFO();
  } catch {
    /* not there yet: a plain file to create */
  }
  if (fifo) {
    // O_RDWR never blocks on a fifo, and holding a read end keeps it writable if containerd restarts.
    const fd = fs.openSync(p, fs.constants.O_RDWR);
    return new net.Socket({ fd, readable: false, writable: true });
  }
  return fs.createWriteStream(p, { flags: 'a' });
}

/**
 * containerd's stdin fifo, opened for reading without blocking. We also hold a write end of our
 * own, so the reader does not see EOF before containerd's writer opens, nor until CloseIO (close()).
 */
export class StdinFifo {
  readonly reader: net.Socket;
  private hold: number;

  constructor(p: string) {
    const src = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    this.hold = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    this.reader = new net.Socket({ fd: src, readable: true, writable: false });
  }

  /** CloseIO: the process sees EOF once containerd's writer is gone too. */
  close(): void {
    if (this.hold >= 0) {
      fs.closeSync(this.hold);
      this.hold = -1;
    }
  }
}

/** Output that stopped this long ago, all flushed, is all a process wrote before its exit. */
export const QUIET_MS = 100;
const QUIET_RECHECK_MS = 10;

/**
 * A process's stdio after its exit: true once `end` settles (EOF, everything flushed), or once the
 * output went quiet — nothing read for QUIET_MS, counted from now at the earliest (bytes written
 * just before the exit may still wait, unread, in the pipe or pty), and `flushed()` — so what the
 * process wrote before it exited is delivered even though a child of it keeps the pipe open;
 * false after `timeoutMs` (a reader too slow to take it all).
 */
export async function drainedOrQuiet(end: Promise<unknown>, lastOutputAt: () => number, flushed: () => boolean, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const since = Date.now();
  const quiet = new Promise<void>((resolve) => {
    const check = () => {
      const idleMs = Date.now() - Math.max(lastOutputAt(), since);
      if (idleMs >= QUIET_MS && flushed()) resolve();
      else timer = setTimeout(check, Math.max(QUIET_MS - idleMs, QUIET_RECHECK_MS));
    };
    check();
  });
  try {
    return await settlesWithin(Promise.race([end, quiet]), timeoutMs);
  } finally {
    clearTimeout(timer);
  }
}

/** true when `p` settles within `ms`, false when the time runs out first (output still open). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
