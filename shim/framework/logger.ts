// pino logger writing JSON lines into a bundle's `log` fifo, which containerd copies into its own log.
import * as fs from 'node:fs';
import pino from 'pino';

export type Logger = pino.Logger;

/** How long the rest of a half-written long line is retried on a full fifo before it is given up. */
const PARTIAL_LINE_WAIT_MS = 100;

/**
 * The `log` fifos the daemon may write to, one per container it serves. containerd opens a
 * container's fifo (O_RDWR) before it runs `start` and reads it for as long as it is connected for
 * that container; with no reader a write fails with EPIPE. A daemon shared by many containers (a
 * pod, a namespace) then moves on to the fifo of a container containerd still reads, newest first,
 * instead of logging into a bundle nobody reads. With none (containerd itself is away) it keeps its
 * fifo: a restarted containerd opens it again.
 */
export class FifoLogSink {
  /** The fifos of the containers served, oldest first. */
  private readonly fifos: string[] = [];
  private current: { fifo: string; fd: number } | undefined;
  /** Lines that found no reader, or a full fifo (containerd not reading fast enough): never blocks. */
  dropped = 0;

  /** A container's fifo: used when there is none yet, or when the current one fails. */
  add(fifo: string): void {
    if (!this.fifos.includes(fifo)) this.fifos.push(fifo);
    if (!this.current) this.moveOn();
  }

  /**
   * `fifo`'s container is deleted: write to another one from now on, if one has a reader (else on
   * to this one, which containerd reads until it disconnects: the daemon's last lines go there).
   */
  remove(fifo: string): void {
    const i = this.fifos.indexOf(fifo);
    if (i >= 0) this.fifos.splice(i, 1);
    if (this.current?.fifo === fifo) this.moveOn();
  }

  /** pino's destination interface: one JSON line. */
  write(line: string): void {
    if (!this.current) {
      this.dropped++;
      return;
    }
    const data = Buffer.from(line);
    let offset = 0;
    let giveUpAt = 0;
    while (this.current && offset < data.length) {
      try {
        offset += fs.writeSync(this.current.fd, data, offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          // A whole line fits a pipe atomically or not at all: drop it rather than stall the shim.
          // One longer than PIPE_BUF may be half written: finish it while containerd reads.
          if (offset > 0 && Date.now() <= (giveUpAt ||= Date.now() + PARTIAL_LINE_WAIT_MS)) continue;
        } else if (offset === 0 && this.moveOn()) {
          continue; // EPIPE: containerd stopped reading this one; the same line goes to the next
        }
        this.dropped++;
        return;
      }
    }
  }

  close(): void {
    this.fifos.length = 0;
    if (this.current) closeQuietly(this.current.fd);
    this.current = undefined;
  }

  /** Switch to the newest other fifo that has a reader; false (current kept) when none has. */
  private moveOn(): boolean {
    for (let i = this.fifos.length - 1; i >= 0; i--) {
      const fifo = this.fifos[i]!;
      if (fifo === this.current?.fifo) continue;
      let fd: number;
      try {
        // Non-blocking: a fifo without a reader fails at once (ENXIO) instead of waiting for one.
        fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      } catch {
        continue;
      }
      if (this.current) closeQuietly(this.current.fd);
      this.current = { fifo, fd };
      return true;
    }
    return false;
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    /* already gone */
  }
}

/**
 * A logger into `<bundle>/log` (and, through `sink.add`, the logs of the containers that come
 * later). With no reader, nobody wants our logs: the lines go nowhere.
 */
export function openFifoLogger(fifoPath: string, level: boolean | string, bindings: Record<string, unknown> = {}): { log: Logger; sink: FifoLogSink } {
  const sink = new FifoLogSink();
  sink.add(fifoPath);
  // A boolean is the -debug flag; a string a pino level (containerd 2.3's BootstrapParams.log_level).
  const name = typeof level === 'string' ? level : level ? 'debug' : 'info';
  const log = pino({ level: name, base: { pid: process.pid, ...bindings } }, sink);
  return { log, sink };
}

/** A logger for the short-lived CLI actions: stderr is reserved (containerd reads start's combined output). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
