// The cgroup of a container's init: its metrics (Task API Stats) and its OOM kills (/tasks/oom).
//
//   cgroupOfPid(pid: number, fsRoots?: Partial<CgroupFs>): Cgroup
//   cgroup.version: 1 | 2
//   cgroup.paths: v1 controller -> directory (only those that exist); v2 { unified: directory }
//   cgroup.stats(): { typeUrl, metrics }   typeUrl 'io.containerd.cgroups.v1.Metrics' or '...v2.Metrics';
//                                          metrics ready for messageType(typeUrl).fromObject
//   cgroup.watchOom(cb): { close() }       cb once per OOM kill
//
// As containerd-shim-runc-v2 (runtime/v2/runc/container.go), the directories are resolved once,
// when the cgroup is loaded from /proc/<pid>/cgroup, and kept for the container's life: stats of
// an exited container read what is left (v1: nothing, v2: an error, as upstream).
// Everything here is small synchronous reads of pseudo-files; nothing blocks for long.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { watchOomV1 } from './oom-v1';
import { watchOomV2 } from './oom-v2';
import { NO_WATCH, type OomWatch } from './oom';
import { parseProcCgroup, readProcCgroup, v1Paths, v2Path } from './paths';
import { isNotExist, readText } from './read';
import { statsV1, V1_TYPE_URL, type V1Metrics } from './v1';
import { statsV2, V2_TYPE_URL, type V2Metrics } from './v2';

export type { OomWatch } from './oom';
export type { V1Metrics } from './v1';
export type { V2Metrics } from './v2';
export { V1_TYPE_URL, V2_TYPE_URL };

/** Where the pseudo-filesystems are; tests point these at a fake tree. */
export interface CgroupFs {
  /** The cgroup mount: the v1 controllers' parent directory, or the v2 hierarchy. */
  cgroupRoot: string;
  /** For <pid>/cgroup, self/mountinfo and partitions. */
  procRoot: string;
  /** The kernel's huge page sizes (hugepages-<N>kB directories), for v1 hugetlb. */
  hugePagesDir: string;
}

export const DEFAULT_FS: CgroupFs = {
  cgroupRoot: '/sys/fs/cgroup',
  procRoot: '/proc',
  hugePagesDir: '/sys/kernel/mm/hugepages',
};

export type CgroupStats = { typeUrl: typeof V1_TYPE_URL; metrics: V1Metrics } | { typeUrl: typeof V2_TYPE_URL; metrics: V2Metrics };

export interface Cgroup {
  readonly version: 1 | 2;
  /** v1: controller -> directory; v2: { unified: directory }. For tests and diagnostics. */
  readonly paths: Readonly<Record<string, string>>;
  /** containerd's metrics for this cgroup. Throws on unreadable or malformed files (not on missing ones, except v2's cgroup.controllers). */
  stats(): CgroupStats;
  /**
   * Call cb once per OOM kill in the cgroup until close(). Never throws for a cgroup that is gone
   * or has no memory controller: the watch is then empty, and it ends by itself when the cgroup
   * is removed (v1) or empty (v2). Throws only when the watch cannot be set up otherwise (e.g. out
   * of fds or inotify watches). Does not keep the process alive.
   */
  watchOom(cb: () => void): OomWatch;
  /**
   * Every process in the cgroup and the cgroups below it (cgroup.procs, as runc ps reads them),
   * in ascending order; [] once the cgroup is gone. Small synchronous reads: no runc call.
   */
  processes(): number[];
}

/**
 * The cgroup(s) of a live process. v2 when <cgroupRoot>/cgroup.controllers exists (a unified
 * host), else v1 with the mount roots from <procRoot>/self/mountinfo. Throws a clear Error (with
 * the fs code, ENOENT) when the process is gone, and when none of its v1 directories exist.
 */
export function cgroupOfPid(pid: number, fsRoots: Partial<CgroupFs> = {}): Cgroup {
  const roots: CgroupFs = { ...DEFAULT_FS, ...fsRoots };
  const proc = parseProcCgroup(readProcCgroup(roots.procRoot, pid));
  if (fs.existsSync(path.join(roots.cgroupRoot, 'cgroup.controllers'))) {
    const dir = v2Path(proc, pid, roots.cgroupRoot);
    return {
      version: 2,
      paths: Object.freeze({ unified: dir }),
      stats: () => ({ typeUrl: V2_TYPE_URL, metrics: statsV2(dir) }),
      watchOom: (cb) => watchOomV2(dir, cb),
      processes: () => processesIn(dir),
    };
  }
  const paths = Object.freeze(v1Paths(proc, readText(path.join(roots.procRoot, 'self', 'mountinfo')), roots.cgroupRoot));
  if (Object.keys(paths).length === 0) throw new Error(`cgroups: the cgroup of process ${pid} is deleted (none of its directories exist)`);
  return {
    version: 1,
    paths,
    stats: () => ({ typeUrl: V1_TYPE_URL, metrics: statsV1(paths, roots) }),
    watchOom: (cb) => (paths.memory === undefined ? NO_WATCH : watchOomV1(paths.memory, Object.values(paths), cb)),
    // Every v1 hierarchy holds all of the container's processes; pids (or else any) will do.
    processes: () => processesIn(paths.pids ?? paths.memory ?? Object.values(paths)[0]!),
  };
}

/** cgroup.procs of dir and of every cgroup below it, deduplicated and sorted. */
export function processesIn(dir: string): number[] {
  const pids = new Set<number>();
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      for (const line of readText(path.join(d, 'cgroup.procs')).split('\n')) {
        const pid = Number(line);
        if (line !== '' && Number.isInteger(pid) && pid > 0) pids.add(pid);
      }
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch (err) {
      if (isNotExist(err)) return; // removed while we read: nothing in it
      throw err;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return [...pids].sort((a, b) => a - b);
}
