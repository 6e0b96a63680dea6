// The exit of a daemon that many `start`s share (one per namespace): it must never go away under a
// `start` that has just handed its address to containerd. It exits only after `lingerMs` with no
// container and no new connection, and decides under the lock `start` holds while it probes the
// socket; a probe made just before the lock was taken is seen (accepted) before the decision.
// A probe (a connection closed without sending a byte) also reserves the daemon for the
// containerd connection that follows it: until a connection sends its first bytes, or for
// RESERVATION_MS, the daemon is not idle, however short the linger.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { native } from './native';

/** How long the decision waits, holding the lock, for connections already queued to be accepted. */
const SETTLE_MS = 50;
const RETRY_LOCK_MS = 50;
/** How long a probe keeps the daemon for the containerd connection its `start` announced. */
export const RESERVATION_MS = 10_000;

export class IdleExit {
  private timer: NodeJS.Timeout | undefined;
  private accepted = 0;
  private isIdle: () => boolean = () => true;
  /** Expiry times of the probes not yet followed by a connection that spoke, oldest first. */
  private readonly reservations: number[] = [];

  constructor(
    private readonly listener: net.Server,
    private readonly lockDir: string,
    private readonly lingerMs: number,
    private readonly exit: () => void,
    private readonly reservationMs = RESERVATION_MS,
  ) {
    listener.on('connection', (socket: net.Socket) => {
      this.accepted++;
      // A newcomer pushes the deadline back.
      if (this.timer) this.arm(this.isIdle);
      let spoke = false;
      // A second 'data' listener beside the server's: both see every chunk.
      socket.once('data', () => {
        spoke = true;
        this.reservations.shift(); // the connection a probe announced (or one like it)
      });
      socket.once('close', () => {
        if (spoke) return;
        this.reservations.push(Date.now() + this.reservationMs);
        if (this.timer) this.arm(this.isIdle);
      });
    });
  }

  /** Exit once idle for lingerMs; `isIdle` is asked again at the deadline. */
  arm(isIdle: () => boolean): void {
    this.isIdle = isIdle;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.decide(), this.lingerMs);
  }

  private decide(): void {
    this.timer = undefined;
    if (!this.isIdle()) return; // the next Shutdown arms again
    if (this.reserved()) return;
    const seen = this.accepted;
    const lockFd = fs.openSync(this.lockDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    if (!native().tryLockExclusive(lockFd)) {
      fs.closeSync(lockFd);
      this.timer = setTimeout(() => this.decide(), RETRY_LOCK_MS);
      return;
    }
    setTimeout(() => {
      const reserved = this.reserved(); // then it has set the timer itself
      if (this.accepted !== seen || !this.isIdle() || reserved) {
        fs.closeSync(lockFd); // releases the lock
        if (!reserved) this.arm(this.isIdle);
        return;
      }
      // Stop accepting now, still under the lock: a later start finds no daemon and makes one.
      this.listener.close();
      this.exit();
      // lockFd stays open: the lock goes with the process, after the socket is removed.
    }, SETTLE_MS);
  }

  /** A probe's containerd connection may still come: look again once the oldest reservation ends. */
  private reserved(): boolean {
    const now = Date.now();
    while (this.reservations.length > 0 && this.reservations[0]! <= now) this.reservations.shift();
    if (this.reservations.length === 0) return false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.decide(), Math.max(this.lingerMs, this.reservations[0]! - now));
    return true;
  }
}
