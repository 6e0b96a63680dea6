// What both OOM watchers (oom-v1.ts, oom-v2.ts) hand back.

export interface OomWatch {
  /** Stop watching and release the fds. Idempotent. */
  close(): void;
}

/** The watch of a cgroup that has nothing to watch (gone, or no memory controller). */
export const NO_WATCH: OomWatch = { close() {} };

/** An fs error meaning the cgroup (or its memory controller) is gone: ENODEV comes from a cgroup being removed. */
export function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENODEV';
}
