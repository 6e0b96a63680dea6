// Where a pid's cgroup lives (/proc/<pid>/cgroup, mountinfo) and the number parsing shared by the
// v1 and v2 readers, checked against containerd/cgroups' utils.go and paths.go behaviour.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { cgroupOfPid, processesIn } from '../../shim/runc/cgroups';
import { mountRootOf, parseProcCgroup, v1Paths, v2Path } from '../../shim/runc/cgroups/paths';
import { MAX_UINT64, parseRdma, parseUint, parseUintStrict, readKV, u64 } from '../../shim/runc/cgroups/read';
import { hugePageSizes } from '../../shim/runc/cgroups/v1';

function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

function tmp(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-cgroups-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const MOUNTINFO = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 /kubepods /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  'short line',
  '',
].join('\n');

t.test('parseProcCgroup: v1 controllers (comma lists split), the unified line, paths with ":"', async (t) => {
  const p = parseProcCgroup('12:cpu,cpuacct:/a/b\n1:name=systemd:/x:y\n0::/u/v\n');
  t.same([...p.legacy], [['cpu', '/a/b'], ['cpuacct', '/a/b'], ['name=systemd', '/x:y']]);
  t.equal(p.unified, '/u/v');
  t.equal(parseProcCgroup('0::/\n').unified, '/');
  t.equal(parseProcCgroup('3:pids:/\n').unified, undefined);
  t.throws(() => parseProcCgroup('garbage\n'), /invalid cgroup entry: "garbage"/);
});

t.test('mountRootOf: only cgroup (v1) mounts, matched on a whole super option', async (t) => {
  t.equal(mountRootOf(MOUNTINFO, 'cpu'), '/');
  t.equal(mountRootOf(MOUNTINFO, 'cpuacct'), '/');
  t.equal(mountRootOf(MOUNTINFO, 'memory'), '/kubepods');
  t.equal(mountRootOf(MOUNTINFO, 'name=systemd'), '/');
  t.equal(mountRootOf(MOUNTINFO, 'cpuset'), undefined, 'not mounted');
  t.equal(mountRootOf(MOUNTINFO, 'cpu,cpuacct'), undefined, 'one controller at a time');
  t.equal(mountRootOf('41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,memory', 'memory'), undefined, 'cgroup2 mounts do not count');
});

t.test('v1Paths: <root>/<controller>/<path relative to the mount root>; absent controllers left out', async (t) => {
  const root = tmp(t);
  for (const d of ['cpu/c1', 'cpuacct/c1', 'memory/c1', 'systemd/c1']) fs.mkdirSync(path.join(root, d), { recursive: true });
  const proc = parseProcCgroup([
    '10:memory:/kubepods/c1', // inside a mount whose root is /kubepods
    '9:pids:/c1', // mounted, but the directory does not exist
    '4:cpu,cpuacct:/c1',
    '3:cpuset:/c1', // not mounted at all
    '1:name=systemd:/c1',
    '0::/c1',
  ].join('\n'));
  t.same(v1Paths(proc, MOUNTINFO, root), {
    memory: path.join(root, 'memory/c1'),
    cpu: path.join(root, 'cpu/c1'),
    cpuacct: path.join(root, 'cpuacct/c1'),
    systemd: path.join(root, 'systemd/c1'),
  });
  t.same(v1Paths(parseProcCgroup('4:cpu,cpuacct:/\n'), MOUNTINFO, root), { cpu: path.join(root, 'cpu'), cpuacct: path.join(root, 'cpuacct') }, 'the root cgroup');
});

t.test('v2Path: the 0:: path under the mount; a path upstream refuses is an error', async (t) => {
  t.equal(v2Path(parseProcCgroup('0::/a/b\n'), 1, '/mnt'), '/mnt/a/b');
  t.equal(v2Path(parseProcCgroup('0::/\n'), 1, '/mnt'), '/mnt');
  t.throws(() => v2Path(parseProcCgroup('1:pids:/a\n'), 7, '/mnt'), /no cgroup v2 path for process 7/);
  t.throws(() => v2Path(parseProcCgroup('0::a/b\n'), 7, '/mnt'), /invalid cgroup v2 path "a\/b"/);
  t.throws(() => v2Path(parseProcCgroup('0::/a/../b\n'), 7, '/mnt'), /invalid cgroup v2 path/);
  t.throws(() => v2Path(parseProcCgroup('0::/sys/fs/cgroup/x\n'), 7, '/mnt'), /invalid cgroup v2 path/);
});

t.test('cgroupOfPid: a pid that is gone (or invalid) is a clear error with the fs code', async (t) => {
  const root = tmp(t);
  writeTree(root, { 'proc/self/mountinfo': MOUNTINFO });
  const roots = { cgroupRoot: path.join(root, 'cg'), procRoot: path.join(root, 'proc') };
  t.throws(() => cgroupOfPid(4242, roots), { message: /process 4242 is gone/, code: 'ENOENT' });
  t.throws(() => cgroupOfPid(0, roots), /invalid pid 0/);
  t.throws(() => cgroupOfPid(-3, roots), /invalid pid -3/);
  // A live pid whose v1 directories are all gone: the cgroup was deleted.
  writeTree(root, { 'proc/5/cgroup': '9:pids:/gone\n' });
  t.throws(() => cgroupOfPid(5, roots), /cgroup of process 5 is deleted/);
});

t.test('cgroupOfPid on this machine: our own process', async (t) => {
  const cg = cgroupOfPid(process.pid);
  t.ok(cg.version === 1 || cg.version === 2);
  t.ok(Object.keys(cg.paths).length > 0, JSON.stringify(cg.paths));
  for (const d of Object.values(cg.paths)) t.ok(fs.existsSync(d), `${d} exists`);
  const s = cg.stats();
  t.match(s.typeUrl, /^io\.containerd\.cgroups\.v[12]\.Metrics$/);
});

t.test('parseUint: Go semantics (negative is 0, beyond 64 bits or junk is an error)', async (t) => {
  t.equal(parseUint('0', 'x'), 0n);
  t.equal(parseUint('18446744073709551615', 'x'), MAX_UINT64);
  t.equal(parseUint('-1', 'x'), 0n);
  t.equal(parseUint('-99999999999999999999999', 'x'), 0n);
  t.throws(() => parseUint('18446744073709551616', 'f'), /invalid unsigned number "18446744073709551616" in f/);
  t.throws(() => parseUint('max', 'f'), /invalid unsigned number "max"/);
  t.throws(() => parseUint('', 'f'));
  t.throws(() => parseUint('-0', 'f'), 'ParseInt gives 0, not negative: an error as upstream');
  t.throws(() => parseUintStrict('-1', 'f'), 'strconv.ParseUint refuses signs');
});

t.test('u64: a number while exact, a decimal string beyond 2^53', async (t) => {
  t.equal(u64(0n), 0);
  t.equal(u64(9007199254740991n), 9007199254740991);
  t.equal(u64(9007199254740992n), '9007199254740992');
  t.equal(u64(MAX_UINT64), '18446744073709551615');
});

t.test('readKV: two fields per line; v1 refuses text values, v2 keeps them', async (t) => {
  const root = tmp(t);
  writeTree(root, { a: 'x 1\ny -5\nz max\n', b: 'x 1 2\n', c: '' });
  t.throws(() => readKV(path.join(root, 'a')), /invalid unsigned number "max"/);
  t.same([...readKV(path.join(root, 'a'), true)], [['x', 1n], ['y', 0n], ['z', 'max']]);
  t.throws(() => readKV(path.join(root, 'b'), true), /invalid format/);
  t.equal(readKV(path.join(root, 'c')).size, 0);
  t.throws(() => readKV(path.join(root, 'missing')), { code: 'ENOENT' });
});

t.test('parseRdma: three fields per line, "max" is MaxUint32', async (t) => {
  t.same(parseRdma('mlx4_0 hca_handle=2 hca_object=2000\nmlx4_1 hca_handle=max hca_object=max\nbad line\n\nx hca_handle=y hca_object=1\n'), [
    { device: 'mlx4_0', hca_handles: 2, hca_objects: 2000 },
    { device: 'mlx4_1', hca_handles: 4294967295, hca_objects: 4294967295 },
    { device: 'x', hca_handles: 0, hca_objects: 1 },
  ]);
});

t.test('hugePageSizes: hugepages-<N>kB as the hugetlb file names spell them, in name order', async (t) => {
  const root = tmp(t);
  for (const d of ['hugepages-2048kB', 'hugepages-1048576kB', 'hugepages-64kB', 'hugepages-32768kB', 'junk']) fs.mkdirSync(path.join(root, d));
  t.same(hugePageSizes(root), ['1GB', '2MB', '32MB', '64KB']);
  t.throws(() => hugePageSizes(path.join(root, 'missing')), { code: 'ENOENT' });
});

t.test('processesIn: cgroup.procs of the cgroup and every one below it, deduplicated, sorted; [] when gone', async (t) => {
  const root = tmp(t);
  writeTree(root, {
    'c1/cgroup.procs': '42\n7\n',
    'c1/sub/cgroup.procs': '100\n42\n',
    'c1/sub/deeper/cgroup.procs': '\n',
    'c1/not-a-cgroup-file': 'x',
  });
  t.same(processesIn(path.join(root, 'c1')), [7, 42, 100]);
  t.same(processesIn(path.join(root, 'gone')), [], 'a removed cgroup has no processes');
});
