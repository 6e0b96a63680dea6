// The shim joins the cgroup named by the ShimCgroup runtime option (kubelet and operators account
// the shim to the pod that way), as containerd-shim-runc-v2's manager does at start: v2, the one
// directory; v1, that path in every mounted hierarchy where it exists (cgroup1.StaticPath), and
// an error only when it exists in none (containerd/cgroups: ErrCgroupDeleted).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_FS, type CgroupFs } from './index';
import { parseProcCgroup, readProcCgroup, v1Paths, type ProcCgroup } from './paths';
import { readText } from './read';

/** Move pid into the cgroup `group` (an absolute cgroup path); returns the directories joined. */
export function joinCgroup(group: string, pid: number, fsRoots: Partial<CgroupFs> = {}): string[] {
  const roots: CgroupFs = { ...DEFAULT_FS, ...fsRoots };
  if (!group.startsWith('/') || path.posix.normalize(group) !== group) {
    throw new Error(`ShimCgroup ${JSON.stringify(group)}: not a clean absolute cgroup path`);
  }
  if (fs.existsSync(path.join(roots.cgroupRoot, 'cgroup.controllers'))) {
    const dir = path.join(roots.cgroupRoot, group);
    addProc(dir, pid, group);
    return [dir];
  }
  // v1: the hierarchies this host mounts are the ones our own process is in; v1Paths resolves
  // the path in each (relative to its mount root) and keeps those where it exists.
  const own = parseProcCgroup(readProcCgroup(roots.procRoot, pid));
  const wanted: ProcCgroup = { legacy: new Map([...own.legacy.keys()].map((subsystem) => [subsystem, group])), unified: undefined };
  const dirs = v1Paths(wanted, readText(path.join(roots.procRoot, 'self', 'mountinfo')), roots.cgroupRoot);
  const joined: string[] = [];
  const seen = new Set<string>();
  for (const dir of Object.values(dirs)) {
    const real = fs.realpathSync(dir); // cpu and cpuacct are one hierarchy
    if (seen.has(real)) continue;
    seen.add(real);
    addProc(dir, pid, group);
    joined.push(dir);
  }
  if (joined.length === 0) throw new Error(`ShimCgroup ${group}: no such cgroup in any mounted hierarchy`);
  return joined;
}

function addProc(dir: string, pid: number, group: string): void {
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.procs'), `${pid}\n`);
  } catch (err) {
    throw new Error(`ShimCgroup ${group}: cannot join ${dir}: ${(err as Error).message}`);
  }
}
