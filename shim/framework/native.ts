// Typed view of the native addon (addon/): only what Node itself cannot do.
import * as path from 'node:path';

export interface SpawnOptions {
  /** Absolute path or a name looked up in PATH (posix_spawnp semantics). */
  file: string;
  /** argv including argv[0]. */
  args: string[];
  /** Full environment as KEY=VALUE strings. */
  env: string[];
  /** Working directory of the child; the shim's own when absent. */
  cwd?: string;
  /** Exact fd map: child fd i becomes fds[i]; -1 means /dev/null. Every other fd is closed (all ours are CLOEXEC). */
  fds: number[];
  /** Start the child in a new session (setsid), detached from our process group. */
  setsid?: boolean;
}

export interface Native {
  /** prctl(PR_SET_CHILD_SUBREAPER, 1). */
  setSubreaper(): void;
  /** waitpid(-1, WNOHANG) until nothing is left; never blocks. status is the exit code, or 128+signal. */
  reap(): Array<{ pid: number; status: number }>;
  /** posix_spawn with the fd map; signal mask and dispositions reset to default in the child. Throws with errno on failure. */
  spawn(opts: SpawnOptions): number;
  /** pipe2(O_CLOEXEC): [readFd, writeFd]. */
  pipe(): [number, number];
  /** mount(2). */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** umount2(2). */
  umount(target: string, flags: number): void;
  /** flock(2) with LOCK_EX (blocking). */
  lockExclusive(fd: number): void;
}

let loaded: Native | undefined;

export function native(): Native {
  if (!loaded) {
    const base = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../addon' : '../../addon');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(path.join(base, 'build/Release/runcts_native.node')) as Native;
  }
  return loaded;
}
