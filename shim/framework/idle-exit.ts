// The exit of a daemon that many `start`s share (one per namespace): it must never go away under a
// `start` that has just handed its address to containerd. It exits only after `lingerMs` with no
// container and no new connection, and decides under the lock `start` holds while it probes the
// socket; a probe made just before the lock was taken is seen (accepted) before the decision.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { native } from './native';

/** How long the decision waits, holding the lock, for connections already queued to be accepted. */
const SETTLE_MS = 50;
const RETRY_LOCK_MS = 50;

export class IdleExit {
  private timer: NodeJS.Timeout | undefined;
  private accepted = 0;
  private isIdle: () => boolean = () => true;

  constructor(
    private readonly listener: net.Server,
    private readonly lockDir: string,
    private readonly lingerMs: number,
    private readonly exit: () => void,
  ) {
    listener.on('connection', () => {
      this.accepted++;
      // A newcomer pushes the deadline back.
      if (this.timer) this.arm(this.isIdle);
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
    const seen = this.accepted;
    const lockFd = fs.openSync(this.lockDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    if (!native().tryLockExclusive(lockFd)) {
      fs.closeSync(lockFd);
      this.timer = setTimeout(() => this.decide(), RETRY_LOCK_MS);
      return;
    }
    setTimeout(() => {
      if (this.accepted !== seen || !this.isIdle()) {
        fs.closeSync(lockFd); // releases the lock
        this.arm(this.isIdle);
        return;
      }
      // Stop accepting now, still under the lock: a later start finds no daemon and makes one.
      this.listener.close();
      this.exit();
      // lockFd stays open: the lock goes with the process, after the socket is removed.
    }, SETTLE_MS);
  }
}
