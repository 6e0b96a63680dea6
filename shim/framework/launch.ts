// How a `start` that bound a new shim socket hands it to a daemon. containerd waits for `start` to
// exit and for its stdout and stderr to close, so the daemon is never the process it waits on:
//
// - in place: bin/ runs node in the background with fd 3 a pipe it reads; node does `start`,
//   writes its exit status to fd 3 and, when it bound a new socket, lets go of its stdio and
//   serves on as the daemon (one node start-up per container instead of two). bin/ exits with
//   that status (1 when node died without writing one).
// - spawned: run by hand (no status fd), `start` spawns the daemon with the socket as fd 3 and
//   exits.
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { daemonArgs, type ShimFlags } from './flags';
import { currentEnv, native } from './native';
import { serverFd } from './socket';

/** Set by bin/: the fd that takes start's exit status. */
export const START_STATUS_ENV = 'RUNCTS_START_STATUS_FD';
/** A spawned namespace daemon's linger (ms), from its `start`. */
export const LINGER_ENV = 'RUNCTS_SHIM_LINGER_MS';

/** The launcher's status pipe: written once, with the start's exit status, then closed. */
export class StartStatus {
  private fd: number | undefined;
  private readonly onExit = (code: number) => this.report(code);

  private constructor(fd: number) {
    this.fd = fd;
    // Every exit reports, a thrown error included; a crash without one reads as status 1.
    process.on('exit', this.onExit);
  }

  /** The pipe bin/ handed this process, if any; the variable is not passed on to children. */
  static fromEnv(): StartStatus | undefined {
    const raw = process.env[START_STATUS_ENV];
    delete process.env[START_STATUS_ENV];
    const fd = Number(raw);
    return raw && Number.isInteger(fd) && fd > 2 ? new StartStatus(fd) : undefined;
  }

  report(code: number): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    process.removeListener('exit', this.onExit);
    try {
      fs.writeSync(fd, String(code));
    } catch {
      /* bin/ is gone: nobody waits for the status */
    }
    fs.closeSync(fd);
  }
}

/** Stay on as the daemon: start reported success, containerd's stdio let go, own session. */
export function becomeDaemon(status: StartStatus): void {
  status.report(0);
  const n = native();
  n.detachStdio();
  n.setsid();
}

/**
 * Connections that arrive on a socket `start` bound in place before the daemon serves it
 * (containerd dials as soon as it has read the address): held unread, then handed over. A net.Server
 * with no 'connection' listener would drop them.
 */
export class EarlyConnections {
  private readonly held: net.Socket[] = [];
  private readonly hold = (socket: net.Socket): void => {
    socket.pause();
    this.held.push(socket);
  };

  constructor(private readonly listener: net.Server) {
    listener.on('connection', this.hold);
  }

  /** `serve` attaches the daemon's own listeners; then the held connections go to them, in order. */
  handOver(serve: () => void): void {
    this.listener.removeListener('connection', this.hold);
    serve();
    for (const socket of this.held.splice(0)) {
      this.listener.emit('connection', socket);
      socket.resume();
    }
  }
}

/** Run the daemon as a process of its own, serving `listener` (its fd 3). */
export function spawnDaemon(name: string, flags: ShimFlags, bundle: string, listener: net.Server, lingerMs: number): void {
  const env = currentEnv(true).filter((kv) => !kv.startsWith(`${LINGER_ENV}=`));
  if (lingerMs > 0) env.push(`${LINGER_ENV}=${lingerMs}`);
  native().spawn({
    file: process.execPath,
    // argv[0] names the shim so `ps` shows what it is.
    args: [name, ...process.execArgv, process.argv[1], ...daemonArgs(flags)],
    env,
    cwd: bundle,
    // The daemon must not hold start's stdout/stderr: containerd waits for both to close.
    fds: [-1, -1, -1, serverFd(listener)],
    setsid: true,
  });
}
