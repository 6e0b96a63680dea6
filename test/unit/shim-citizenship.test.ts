// The shim's place on the node, unit level: joining the ShimCgroup (v1 over every mounted
// hierarchy where the path exists, v2 the one directory) on fake cgroupfs trees, and the OOM score
// rule (inherited + 1, clamped at 1000) on a fake /proc.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { joinCgroup } from '../../shim/runc/cgroups/join';
import { adjustOwnOomScore } from '../../shim/framework/oom-score';

function tmp(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-citizen-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
  '41 31 0:38 /kubepods /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio',
  '',
].join('\n');
const PID = 4242;

/** A v1 host: /proc/<PID>/cgroup, /proc/self/mountinfo and the hierarchies, cpu and cpuacct one directory. */
function v1Host(t: Test, groups: string[]): { cgroupRoot: string; procRoot: string } {
  const root = tmp(t);
  const cgroupRoot = path.join(root, 'cgroup');
  const procRoot = path.join(root, 'proc');
  fs.mkdirSync(path.join(procRoot, String(PID)), { recursive: true });
  fs.mkdirSync(path.join(procRoot, 'self'), { recursive: true });
  fs.writeFileSync(path.join(procRoot, String(PID), 'cgroup'),
    '5:cpu,cpuacct:/\n4:memory:/\n3:pids:/\n2:blkio:/kubepods\n1:name=systemd:/\n0::/\n');
  fs.writeFileSync(path.join(procRoot, 'self', 'mountinfo'), MOUNTINFO);
  fs.mkdirSync(path.join(cgroupRoot, 'cpu,cpuacct'), { recursive: true });
  fs.symlinkSync('cpu,cpuacct', path.join(cgroupRoot, 'cpu'));
  fs.symlinkSync('cpu,cpuacct', path.join(cgroupRoot, 'cpuacct'));
  for (const g of groups) fs.mkdirSync(path.join(cgroupRoot, g), { recursive: true });
  return { cgroupRoot, procRoot };
}

t.test('joinCgroup v1: the path in every hierarchy that has it, cpu and cpuacct written once, a missing one skipped', async (t) => {
  const host = v1Host(t, ['cpu,cpuacct/pod1/shim', 'memory/pod1/shim', 'systemd/pod1/shim']);
  const joined = joinCgroup('/pod1/shim', PID, host);
  const rel = joined.map((d) => path.relative(host.cgroupRoot, d)).sort();
  t.equal(rel.length, 3, 'three hierarchies (pids has no such cgroup; blkio\'s mount root /kubepods does not contain it)');
  t.ok(rel.includes('memory/pod1/shim') && rel.includes('systemd/pod1/shim'), 'memory and the named systemd hierarchy', { rel });
  t.ok(rel.some((r) => r.startsWith('cpu')), 'the cpu,cpuacct hierarchy once', { rel });
  for (const d of joined) t.equal(fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8'), `${PID}\n`, `pid written to ${path.relative(host.cgroupRoot, d)}/cgroup.procs`);
  t.notOk(fs.existsSync(path.join(host.cgroupRoot, 'pids/pod1/shim')), 'no cgroup is created where it does not exist');
});

t.test('joinCgroup v1: a mount whose root is not / takes the path relative to it', async (t) => {
  const host = v1Host(t, ['blkio/podx']);
  t.same(joinCgroup('/kubepods/podx', PID, host), [path.join(host.cgroupRoot, 'blkio/podx')]);
});

t.test('joinCgroup: clear errors for a cgroup that exists nowhere and for a path that is not clean and absolute', async (t) => {
  const host = v1Host(t, []);
  t.throws(() => joinCgroup('/nope', PID, host), /ShimCgroup \/nope: no such cgroup in any mounted hierarchy/);
  t.throws(() => joinCgroup('relative', PID, host), /not a clean absolute cgroup path/);
  t.throws(() => joinCgroup('/a/../b', PID, host), /not a clean absolute cgroup path/);
});

t.test('joinCgroup v2: the one directory of the unified hierarchy; a missing one is an error naming it', async (t) => {
  const root = tmp(t);
  fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpu memory pids\n');
  fs.mkdirSync(path.join(root, 'kubepods/pod1'), { recursive: true });
  t.same(joinCgroup('/kubepods/pod1', PID, { cgroupRoot: root }), [path.join(root, 'kubepods/pod1')]);
  t.equal(fs.readFileSync(path.join(root, 'kubepods/pod1/cgroup.procs'), 'utf8'), `${PID}\n`);
  t.throws(() => joinCgroup('/kubepods/pod2', PID, { cgroupRoot: root }), /ShimCgroup \/kubepods\/pod2: cannot join .*kubepods\/pod2/);
});

t.test('adjustOwnOomScore: inherited + 1, clamped at 1000, negative scores too', async (t) => {
  const procRoot = tmp(t);
  fs.mkdirSync(path.join(procRoot, 'self'));
  const file = path.join(procRoot, 'self', 'oom_score_adj');
  for (const [from, to] of [[0, 1], [-999, -998], [-1000, -999], [998, 999], [999, 1000], [1000, 1000]]) {
    fs.writeFileSync(file, `${from}\n`);
    t.equal(adjustOwnOomScore(procRoot), to, `${from} -> ${to}`);
    t.equal(Number(fs.readFileSync(file, 'utf8')), to, 'written');
  }
  fs.writeFileSync(file, 'garbage\n');
  t.throws(() => adjustOwnOomScore(procRoot), /unexpected content/);
});
