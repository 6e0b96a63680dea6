// pino logger writing JSON lines into the bundle's `log` fifo, which containerd copies into its own log.
import * as fs from 'node:fs';
import pino from 'pino';

export type Logger = pino.Logger;

/**
 * Open `<bundle>/log` for writing without blocking: containerd holds the fifo open O_RDWR before it
 * starts us, so a missing reader means nobody wants our logs and we fall back to a silent logger.
 */
export function openFifoLogger(fifoPath: string, debug: boolean, bindings: Record<string, unknown> = {}): Logger {
  const level = debug ? 'debug' : 'info';
  let fd: number;
  try {
    fd = fs.openSync(fifoPath, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    return pino({ level: 'silent' });
  }
  // sync: a shim that dies must not lose its last lines; the fifo reader is containerd itself.
  const dest = pino.destination({ fd, sync: true });
  dest.on('error', () => { /* containerd went away: logging must never take the shim down */ });
  return pino({ level, base: { pid: process.pid, ...bindings } }, dest);
}

/** A logger for the short-lived CLI actions: stderr is reserved (containerd reads start's combined output). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
