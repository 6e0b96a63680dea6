// cgroup v2 OOM notification (containerd pkg/oom/v2 + cgroups v2 EventChan): inotify on
// memory.events and cgroup.events (fs.watch, no polling). On every change memory.events is read;
// an oom_kill count above the last one seen is one OOM event. The watch ends when the cgroup is
// empty (cgroup.events "populated 0") or its files can no longer be read (it was removed).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isGone, NO_WATCH, type OomWatch } from './oom';
import { kv, readKV } from './read';

export function watchOomV2(dir: string, cb: () => void): OomWatch {
  const eventsFile = path.join(dir, 'memory.events');
  // As upstream, the count starts at 0, not at the file's current value: kills that happened
  // before the watch are reported with the next change.
  let lastOomKill = 0n;
  let closed = false;
  const watchers: fs.FSWatcher[] = [];
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const w of watchers) w.close();
  };
  const onChange = (): void => {
    if (closed) return;
    let oomKill: bigint;
    try {
      oomKill = kv(readKV(eventsFile, true), 'oom_kill');
    } catch {
      // Gone (ENOENT, or ENODEV from a cgroup being removed) or unreadable: the watch ends.
      return close();
    }
    if (oomKill > lastOomKill) cb();
    if (oomKill > 0n) lastOomKill = oomKill;
    if (isEmpty(dir)) close();
  };
  try {
    for (const name of ['memory.events', 'cgroup.events']) {
      // persistent: false, so that an OOM watch alone does not keep the shim alive.
      const w = fs.watch(path.join(dir, name), { persistent: false }, onChange);
      w.on('error', close);
      watchers.push(w);
    }
  } catch (err) {
    close();
    // No memory.events (memory controller not enabled, or the cgroup is already gone).
    if (isGone(err)) return NO_WATCH;
    throw err;
  }
  return { close };
}

/** cgroup.events "populated 0"; any doubt (unreadable, no such key) counts as empty, as upstream. */
function isEmpty(dir: string): boolean {
  try {
    const v = readKV(path.join(dir, 'cgroup.events'), true).get('populated');
    return typeof v !== 'bigint' || v === 0n;
  } catch {
    return true;
  }
}
