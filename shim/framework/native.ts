// Typed view of the native addon (addon/): only what Node itself cannot do.
//
// Errors thrown by these functions are real `Error`s shaped like Node's own fs errors:
// `code` ('ENOENT'), `errno` (negative, as Node reports it: -2), `syscall` ('posix_spawn') and,
// where one applies, `path`. Bad argument types throw a TypeError.
import * as path from 'node:path';
import * as v8 from 'node:v8';
import { installRoot } from './install-root';

export interface SpawnOptions {
  /** Absolute path or a name looked up in the shim's own PATH (posix_spawnp semantics). */
  file: string;
  /** argv including argv[0]. */
  args: string[];
  /** Full environment as KEY=VALUE strings. */
  env: string[];
  /** Working directory of the child; the shim's own when absent. A missing one throws (syscall 'chdir'). */
  cwd?: string;
  /**
   * Exact fd map: child fd i becomes fds[i]; -1 means /dev/null. Every fd >= fds.length is
   * closed in the child (whether or not it is CLOEXEC). Sources may overlap targets freely.
   */
  fds: number[];
  /** Start the child in a new session (setsid), detached from our process group. */
  setsid?: boolean;
}

/** A readiness watch on an fd (uv_poll); see Native.watchReadable. */
export interface FdWatch {
  /** Stop watching. Never closes the fd. Idempotent. */
  close(): void;
  /** Do not keep the process alive for this watch. */
  unref(): void;
}

export interface Native {
  /** prctl(PR_SET_CHILD_SUBREAPER, 1). */
  setSubreaper(): void;
  /**
   * waitpid(-1, WNOHANG) until nothing is left; never blocks. status is the exit code, or
   * 128+signal. Only the Reaper may call this: whatever it returns is gone from the kernel.
   */
  reap(): Array<{ pid: number; status: number }>;
  /**
   * posix_spawn with the fd map; the child starts with an empty signal mask and every signal's
   * disposition at its default (SIGPIPE, which Node ignores, included). Returns the pid. Throws
   * with the errno on failure (ENOENT for a missing binary); nothing is left behind then.
   * Use Reaper.spawn, which registers the exit waiter with the spawn.
   */
  spawn(opts: SpawnOptions): number;
  /** setsid(2): leave the caller's process group and session. */
  setsid(): void;
  /** dup2 /dev/null over fds 0, 1 and 2 (a daemon lets go of the stdio it was started with). */
  detachStdio(): void;
  /** pipe2(O_CLOEXEC): [readFd, writeFd]. */
  pipe(): [number, number];
  /** close(2). */
  closeFd(fd: number): void;
  /** mount(2). An empty fstype or data is passed as NULL. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** umount2(2); flags e.g. MNT_DETACH = 2. */
  umount(target: string, flags: number): void;
  /** flock(2) with LOCK_EX. Blocks the whole thread until granted: short-lived processes only. */
  lockExclusive(fd: number): void;
  /** flock(2) with LOCK_EX | LOCK_NB: true when granted, false when held elsewhere. Never blocks (for the daemon). */
  tryLockExclusive(fd: number): boolean;
  /** ioctl(fd, TIOCSWINSZ) on a tty or pty master. */
  setWinsize(fd: number, rows: number, cols: number): void;
  /**
   * eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), e.g. for cgroup v1 memory.oom_control. Read the
   * 8-byte counter with fs.readSync when watchReadable reports it readable.
   */
  eventfd(): number;
  /** A listening unix stream socket bound at path (CLOEXEC, non-blocking), e.g. runc's --console-socket. */
  unixListen(path: string): number;
  /** A connected (blocking, CLOEXEC) unix stream socket to path. For tests and tools. */
  unixConnect(path: string): number;
  /** accept4 (CLOEXEC, non-blocking): the connection's fd, or null when none is pending. */
  accept(fd: number): number | null;
  /**
   * Receive one fd sent with SCM_RIGHTS (CLOEXEC): the fd, or null when nothing has arrived yet.
   * Throws ENOMSG when the peer closed without sending one. Payload bytes are discarded.
   */
  recvFd(fd: number): number | null;
  /** Send fd with SCM_RIGHTS over a connected unix socket (one payload byte). For tests and tools. */
  sendFd(socket: number, fd: number): void;
  /** getsockopt(SO_PEERCRED) of a connected unix socket: the peer's pid, uid and gid at connect time. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /**
   * Call cb on the event loop whenever fd is readable (level-triggered: consume until EAGAIN or
   * it fires again). On a poll error cb(err) is called once and the watch closes. An exception
   * thrown by cb is an uncaught exception of the process. The watch stays active, and keeps the
   * process alive unless unref()ed, until close().
   */
  watchReadable(fd: number, cb: (err?: Error) => void): FdWatch;
}

/** bin/ moves NODE_EXTRA_CA_CERTS here so that node does not load it at every shim start. */
const SAVED_CA_CERTS = 'RUNCTS_NODE_EXTRA_CA_CERTS';

let childEnv: string[] | undefined;

/**
 * The shim's own environment in SpawnOptions.env form: as containerd gave it to bin/, or, for
 * another shim process (`forShim`), as bin/ left it. The children's copy is built once (every
 * runc call needs it; nothing changes the shim's environment once it runs).
 */
export function currentEnv(forShim = false): string[] {
  if (!forShim && childEnv) return childEnv;
  const env: string[] = [];
  for (const [k, v] of Object.entries(process.env)) {
    if (k === SAVED_CA_CERTS && !forShim) env.push(`NODE_EXTRA_CA_CERTS=${v ?? ''}`);
    else env.push(`${k}=${v ?? ''}`);
  }
  // Never inside the startup snapshot: the build's environment is not the shim's.
  if (!forShim && !v8.startupSnapshot?.isBuildingSnapshot()) childEnv = env;
  return env;
}

let loaded: Native | undefined;

export function native(): Native {
  if (!loaded) {
    // dlopen rather than require: inside the startup snapshot `require` knows built-in modules only.
    const m = { exports: {} as Native };
    process.dlopen(m, path.join(installRoot(), 'addon/build/Release/runcts_native.node'));
    loaded = m.exports;
  }
  return loaded;
}
