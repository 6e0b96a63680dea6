// cgroup v1 OOM notification (containerd pkg/oom/v1 + cgroups OOMEventFD): an eventfd registered
// for memory.oom_control through cgroup.event_control. The kernel signals it on every OOM in the
// cgroup, and once more when the cgroup is removed; that last wake ends the watch instead.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../framework/native';
import { isGone, NO_WATCH, type OomWatch } from './oom';

/**
 * memoryDir: the memory controller's directory. allDirs: every directory of the cgroup; when one
 * is gone the cgroup counts as deleted (upstream's State() == Deleted).
 */
export function watchOomV1(memoryDir: string, allDirs: string[], cb: () => void): OomWatch {
  const n = native();
  const efd = n.eventfd();
  try {
    const ofd = fs.openSync(path.join(memoryDir, 'memory.oom_control'), 'r');
    try {
      // "<event fd> <fd of the file to watch> <args>"; the OOM event takes no args.
      fs.writeFileSync(path.join(memoryDir, 'cgroup.event_control'), `${efd} ${ofd} `);
    } finally {
      // The kernel holds its own reference once registered.
      fs.closeSync(ofd);
    }
  } catch (err) {
    n.closeFd(efd);
    // A cgroup removed before we got here (the container already exited) has no OOM to report.
    if (isGone(err)) return NO_WATCH;
    throw err;
  }

  let closed = false;
  const counter = Buffer.alloc(8);
  const close = (): void => {
    if (closed) return;
    closed = true;
    watch.close();
    n.closeFd(efd);
  };
  const watch = n.watchReadable(efd, (err) => {
    if (err) return close();
    try {
      fs.readSync(efd, counter, 0, 8, null);
    } catch {
      // EAGAIN: already drained by an earlier wake; nothing new.
      return;
    }
    if (allDirs.some((d) => !fs.existsSync(d))) return close();
    cb();
  });
  // An OOM watch alone must not keep the shim alive.
  watch.unref();
  return { close };
}
