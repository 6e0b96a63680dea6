// Where a process's cgroup lives: /proc/<pid>/cgroup, and for v1 the mount roots from
// /proc/self/mountinfo (containerd/cgroups PidPath + existingPath, v2 PidGroupPath + LoadManager).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { lines, readText } from './read';

export interface ProcCgroup {
  /** v1: controller (or "name=systemd") -> path inside its hierarchy. */
  legacy: Map<string, string>;
  /** The "0::<path>" line (v2, or the unified part of a hybrid host), if any. */
  unified: string | undefined;
}

/** /proc/<pid>/cgroup of a live process; a clear Error (code kept, e.g. ENOENT) when it is gone. */
export function readProcCgroup(procRoot: string, pid: number): string {
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`cgroups: invalid pid ${pid}`);
  const file = path.join(procRoot, String(pid), 'cgroup');
  try {
    return readText(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const gone = code === 'ENOENT' || code === 'ESRCH';
    const e = new Error(
      gone ? `cgroups: process ${pid} is gone (${file} does not exist)` : `cgroups: cannot read ${file}: ${(err as Error).message}`,
    ) as NodeJS.ErrnoException;
    e.code = code;
    throw e;
  }
}

export function parseProcCgroup(text: string): ProcCgroup {
  const legacy = new Map<string, string>();
  let unified: string | undefined;
  for (const line of lines(text)) {
    // "hierarchy-id:controller,list:path"; the path itself may contain ':'.
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) throw new Error(`cgroups: invalid cgroup entry: ${JSON.stringify(line)}`);
    const controllers = line.slice(a + 1, b);
    const p = line.slice(b + 1);
    for (const c of controllers.split(',')) {
      if (c === '') unified = p;
      else legacy.set(c, p);
    }
  }
  return { legacy, unified };
}

/**
 * The root (4th field) of the cgroup v1 mount that carries `subsystem` among its super options;
 * undefined when that hierarchy is not mounted.
 */
export function mountRootOf(mountinfo: string, subsystem: string): string | undefined {
  for (const line of lines(mountinfo)) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    // The last three fields follow the "-" separator: fstype, source, super options.
    if (f[f.length - 3] !== 'cgroup') continue;
    if (f[f.length - 1].split(',').includes(subsystem)) return f[3];
  }
  return undefined;
}

/**
 * v1: controller -> directory, for every controller of the process whose hierarchy is mounted and
 * whose directory exists. Named hierarchies appear under their name ("systemd").
 */
export function v1Paths(proc: ProcCgroup, mountinfo: string, cgroupRoot: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [subsystem, p] of proc.legacy) {
    const root = mountRootOf(mountinfo, subsystem);
    if (root === undefined) continue;
    // Inside a cgroup namespace or a bind-mounted sub-hierarchy the mount root is not "/":
    // the process's path is relative to it.
    const rel = path.relative(root, p);
    if (rel.startsWith('..')) continue;
    const name = subsystem.startsWith('name=') ? subsystem.slice('name='.length) : subsystem;
    const dir = path.join(cgroupRoot, name, rel);
    if (fs.existsSync(dir)) out[name] = dir;
  }
  return out;
}

/** v2: the process's directory in the unified hierarchy mounted at cgroupRoot. */
export function v2Path(proc: ProcCgroup, pid: number, cgroupRoot: string): string {
  const g = proc.unified;
  if (g === undefined) throw new Error(`cgroups: no cgroup v2 path for process ${pid} (no "0::" line)`);
  // VerifyGroupPath: a clean absolute path, never a host path.
  if (!g.startsWith('/') || path.posix.normalize(g) !== g || g.startsWith('/sys/fs/cgroup')) {
    throw new Error(`cgroups: invalid cgroup v2 path ${JSON.stringify(g)} for process ${pid}`);
  }
  // Go's filepath.Join cleans: the root cgroup is the mount itself, without a trailing "/".
  return g === '/' ? path.normalize(cgroupRoot) : path.join(cgroupRoot, g);
}
