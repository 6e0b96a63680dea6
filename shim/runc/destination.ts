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
