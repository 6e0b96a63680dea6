// cgroup v1 metrics over a fake cgroupfs tree (and a fake /proc), field by field against what
// containerd/cgroups' Stat(IgnoreNotExist) fills; then the message through protobufjs, so that
// every field name we produce exists in io.containerd.cgroups.v1.Metrics.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { checkRoundTrip as roundTrip } from './harness/metrics';
import { cgroupOfPid, type Cgroup, type V1Metrics } from '../../shim/runc/cgroups';

function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

const PID = 4321;
const UNLIMITED = '9223372036854771712'; // an unlimited v1 memory limit: beyond 2^53, kept exact

/** memory.stat keys and the Metrics field each lands in. */
const MEMORY_STAT: Array<[string, string]> = [
  ['cache', 'cache'], ['rss', 'rss'], ['rss_huge', 'rss_huge'], ['mapped_file', 'mapped_file'], ['dirty', 'dirty'],
  ['writeback', 'writeback'], ['pgpgin', 'pg_pg_in'], ['pgpgout', 'pg_pg_out'], ['pgfault', 'pg_fault'],
  ['pgmajfault', 'pg_maj_fault'], ['inactive_anon', 'inactive_anon'], ['active_anon', 'active_anon'],
  ['inactive_file', 'inactive_file'], ['active_file', 'active_file'], ['unevictable', 'unevictable'],
];
const MEMORY_STAT_ALL: Array<[string, string, number | string]> = [
  ...MEMORY_STAT.map(([k, f], i): [string, string, number] => [k, f, 1000 + i]),
  ['hierarchical_memory_limit', 'hierarchical_memory_limit', UNLIMITED],
  ['hierarchical_memsw_limit', 'hierarchical_swap_limit', 536870912],
  ...MEMORY_STAT.map(([k, f], i): [string, string, number] => [`total_${k}`, `total_${f}`, 2000 + i]),
];

/** A container cgroup /kubepods/c1 in every v1 controller, with cpu and cpuacct co-mounted. */
function fakeHost(t: Test): { roots: { cgroupRoot: string; procRoot: string; hugePagesDir: string }; root: string; dir: (c: string) => string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-cgroups-v1-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const cg = path.join(root, 'sys/fs/cgroup');
  const dir = (c: string): string => path.join(cg, c, 'kubepods/c1');
  fs.mkdirSync(path.join(cg, 'cpu,cpuacct'), { recursive: true });
  fs.symlinkSync('cpu,cpuacct', path.join(cg, 'cpu'));
  fs.symlinkSync('cpu,cpuacct', path.join(cg, 'cpuacct'));
  const mounts = ['cpu,cpuacct', 'memory', 'pids', 'blkio', 'hugetlb', 'rdma', 'freezer'];
  const mountinfo = [
    `31 23 0:28 / ${cg} rw,relatime - tmpfs tmpfs rw,mode=755`,
    ...mounts.map((m, i) => `${40 + i} 31 0:${50 + i} / ${cg}/${m} rw,nosuid,nodev,noexec,relatime shared:${i} - cgroup cgroup rw,${m}`),
    `60 31 0:60 / ${cg}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd`,
    `61 31 0:61 / ${cg}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate`,
  ].join('\n');
  writeTree(root, {
    [`proc/${PID}/cgroup`]: [
      '12:hugetlb:/kubepods/c1', '11:rdma:/kubepods/c1', '10:memory:/kubepods/c1', '9:pids:/kubepods/c1',
      '8:blkio:/kubepods/c1', '7:freezer:/kubepods/c1', '4:cpu,cpuacct:/kubepods/c1', '1:name=systemd:/kubepods/c1', '0::/kubepods/c1',
    ].join('\n') + '\n',
    'proc/self/mountinfo': mountinfo + '\n',
    'proc/partitions': 'major minor  #blocks  name\n\n 259        0  104857600 nvme0n1\n 259        1     524288 nvme0n1p1\n   8        0   10485760 sda\n',
    'sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages': '0\n',
    'sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages': '0\n',
    'sys/fs/cgroup/freezer/kubepods/c1/freezer.state': 'THAWED\n',
    'sys/fs/cgroup/systemd/kubepods/c1/cgroup.procs': '',
    'sys/fs/cgroup/cpu,cpuacct/kubepods/c1/cpu.stat': 'nr_periods 10\nnr_throttled 3\nthrottled_time 123456789\nnr_bursts 0\nburst_time 0\n',
    'sys/fs/cgroup/cpu,cpuacct/kubepods/c1/cpuacct.stat': 'user 250\nsystem 131\n',
    'sys/fs/cgroup/cpu,cpuacct/kubepods/c1/cpuacct.usage': '4100000000\n',
    'sys/fs/cgroup/cpu,cpuacct/kubepods/c1/cpuacct.usage_percpu': '2000000000 2100000000 \n',
    'sys/fs/cgroup/pids/kubepods/c1/pids.current': '7\n',
    'sys/fs/cgroup/pids/kubepods/c1/pids.max': 'max\n',
    'sys/fs/cgroup/memory/kubepods/c1/memory.stat': MEMORY_STAT_ALL.map(([k, , v]) => `${k} ${v}\n`).join(''),
    'sys/fs/cgroup/memory/kubepods/c1/memory.oom_control': 'oom_kill_disable 0\nunder_oom 1\noom_kill 4\n',
    'sys/fs/cgroup/memory/kubepods/c1/cgroup.event_control': '',
    ...memoryEntryFiles(),
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_serviced_recursive': '259:0 Read 10\n259:0 Write 20\n259:0 Sync 25\n259:0 Async 5\n259:0 Discard 0\n259:0 Total 30\n8:0 Read 1\nTotal 31\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_service_bytes_recursive': '259:0 Read 40960\n259:0 Write 81920\nTotal 122880\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.sectors_recursive': '259:0 240\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_queued_recursive': '259:0 Read 0\nTotal 0\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_service_time_recursive': '259:0 Read 5000\nTotal 5000\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_wait_time_recursive': '259:0 Write 7000\nTotal 7000\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.io_merged_recursive': 'Total 0\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.time_recursive': '259:0 77\n9:9 1\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.throttle.io_serviced': '8:0 Read 99\nTotal 99\n',
    'sys/fs/cgroup/blkio/kubepods/c1/blkio.throttle.io_service_bytes': '8:0 Read 9999\nTotal 9999\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.2MB.usage_in_bytes': '4194304\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.2MB.max_usage_in_bytes': '6291456\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.2MB.failcnt': '2\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.1GB.usage_in_bytes': '0\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.1GB.max_usage_in_bytes': '1073741824\n',
    'sys/fs/cgroup/hugetlb/kubepods/c1/hugetlb.1GB.failcnt': '0\n',
    'sys/fs/cgroup/rdma/kubepods/c1/rdma.current': 'mlx4_0 hca_handle=2 hca_object=2000\n',
    'sys/fs/cgroup/rdma/kubepods/c1/rdma.max': 'mlx4_0 hca_handle=max hca_object=100\n',
  });
  return {
    root,
    dir,
    roots: { cgroupRoot: cg, procRoot: path.join(root, 'proc'), hugePagesDir: path.join(root, 'sys/kernel/mm/hugepages') },
  };
}

/** memory.{,memsw.,kmem.,kmem.tcp.}{usage_in_bytes,max_usage_in_bytes,failcnt,limit_in_bytes}: module n, value n*100+k. */
function memoryEntryFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  ['memory.', 'memory.memsw.', 'memory.kmem.', 'memory.kmem.tcp.'].forEach((prefix, n) => {
    ['usage_in_bytes', 'max_usage_in_bytes', 'failcnt'].forEach((f, k) => {
      out[`sys/fs/cgroup/memory/kubepods/c1/${prefix}${f}`] = `${(n + 1) * 100 + k}\n`;
    });
    out[`sys/fs/cgroup/memory/kubepods/c1/${prefix}limit_in_bytes`] = n === 0 ? '268435456\n' : `${UNLIMITED}\n`;
  });
  return out;
}

function entry(n: number, limit: number | string): { limit: number | string; usage: number; max: number; failcnt: number } {
  return { limit, usage: n * 100, max: n * 100 + 1, failcnt: n * 100 + 2 };
}

function v1(cg: Cgroup): V1Metrics {
  const s = cg.stats();
  if (s.typeUrl !== 'io.containerd.cgroups.v1.Metrics') throw new Error(`expected v1 metrics, got ${s.typeUrl}`);
  return s.metrics;
}

const checkRoundTrip = (t: Test, metrics: object): void => roundTrip(t, 'io.containerd.cgroups.v1.Metrics', metrics);

t.test('every controller, every field', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  t.equal(cg.version, 1);
  t.same(cg.paths, {
    hugetlb: dir('hugetlb'), rdma: dir('rdma'), memory: dir('memory'), pids: dir('pids'), blkio: dir('blkio'),
    freezer: dir('freezer'), cpu: dir('cpu'), cpuacct: dir('cpuacct'), systemd: dir('systemd'),
  });
  const m = v1(cg);

  t.same(m.pids, { current: 7, limit: 0 }, 'pids.max "max" is 0');
  t.same(m.cpu, {
    // cpuacct.stat is in USER_HZ (100/s) ticks: 250 ticks = 2.5 s, in nanoseconds.
    usage: { total: 4100000000, user: 2500000000, kernel: 1310000000, per_cpu: [2000000000, 2100000000] },
    throttling: { periods: 10, throttled_periods: 3, throttled_time: 123456789 },
  });

  const mem = m.memory;
  if (!mem) throw new Error('no memory stats');
  for (const [key, field, value] of MEMORY_STAT_ALL) t.equal(mem[field], value, `memory.${field} from memory.stat ${key}`);
  t.same(mem.usage, entry(1, 268435456), 'memory.* -> usage');
  t.same(mem.swap, entry(2, UNLIMITED), 'memory.memsw.* -> swap');
  t.same(mem.kernel, entry(3, UNLIMITED), 'memory.kmem.* -> kernel');
  t.same(mem.kernel_tcp, entry(4, UNLIMITED), 'memory.kmem.tcp.* -> kernel_tcp');
  t.same(m.memory_oom_control, { oom_kill_disable: 0, under_oom: 1, oom_kill: 4 });

  const e = (op: string, major: number, minor: number, value: number, device = major === 259 && minor === 0 ? '/dev/nvme0n1' : '') => ({ op, device, major, minor, value });
  t.same(m.blkio, {
    io_service_bytes_recursive: [e('Read', 259, 0, 40960), e('Write', 259, 0, 81920)],
    io_serviced_recursive: [e('Read', 259, 0, 10), e('Write', 259, 0, 20), e('Sync', 259, 0, 25), e('Async', 259, 0, 5), e('Discard', 259, 0, 0), e('Total', 259, 0, 30), e('Read', 8, 0, 1, '/dev/sda')],
    io_queued_recursive: [e('Read', 259, 0, 0)],
    io_service_time_recursive: [e('Read', 259, 0, 5000)],
    io_wait_time_recursive: [e('Write', 259, 0, 7000)],
    io_merged_recursive: [],
    io_time_recursive: [e('', 259, 0, 77), e('', 9, 9, 1)],
    sectors_recursive: [e('', 259, 0, 240)],
  }, 'the CFQ files, devices named from /proc/partitions, Total lines skipped');

  t.same(m.hugetlb, [
    { pagesize: '1GB', usage: 0, max: 1073741824, failcnt: 0 },
    { pagesize: '2MB', usage: 4194304, max: 6291456, failcnt: 2 },
  ], 'one entry per kernel page size');
  t.same(m.rdma, { current: [{ device: 'mlx4_0', hca_handles: 2, hca_objects: 2000 }], limit: [{ device: 'mlx4_0', hca_handles: 4294967295, hca_objects: 100 }] });
  checkRoundTrip(t, m);
});

t.test('pids.max with a number', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir('pids'), 'pids.max'), '100\n');
  t.same(v1(cgroupOfPid(PID, roots)).pids, { current: 7, limit: 100 });
});

t.test('blkio without CFQ entries: the throttle files', async (t) => {
  const { roots, dir } = fakeHost(t);
  const b = dir('blkio');
  for (const f of fs.readdirSync(b)) if (f.endsWith('_recursive') && f !== 'blkio.io_serviced_recursive') fs.writeFileSync(path.join(b, f), 'Total 0\n');
  fs.writeFileSync(path.join(b, 'blkio.io_serviced_recursive'), 'Total 0\n');
  const m = v1(cgroupOfPid(PID, roots));
  t.same(m.blkio?.io_serviced_recursive, [{ op: 'Read', device: '/dev/sda', major: 8, minor: 0, value: 99 }]);
  t.same(m.blkio?.io_service_bytes_recursive, [{ op: 'Read', device: '/dev/sda', major: 8, minor: 0, value: 9999 }]);
  t.same(m.blkio?.sectors_recursive, []);

  // A kernel without CFQ at all: no blkio.io_serviced_recursive, straight to the throttle files.
  for (const f of fs.readdirSync(b)) if (f.endsWith('_recursive')) fs.unlinkSync(path.join(b, f));
  t.same(v1(cgroupOfPid(PID, roots)).blkio?.io_serviced_recursive, [{ op: 'Read', device: '/dev/sda', major: 8, minor: 0, value: 99 }]);
});

t.test('absent controllers are left out silently; cpu is always there', async (t) => {
  const { roots, dir } = fakeHost(t);
  for (const c of ['memory', 'pids', 'blkio', 'hugetlb', 'rdma', 'cpu,cpuacct']) fs.rmSync(dir(c), { recursive: true });
  const cg = cgroupOfPid(PID, roots);
  t.same(Object.keys(cg.paths).sort(), ['freezer', 'systemd']);
  const m = v1(cg);
  t.same(m, {
    cpu: { usage: { total: 0, kernel: 0, user: 0, per_cpu: [] }, throttling: { periods: 0, throttled_periods: 0, throttled_time: 0 } },
  });
  checkRoundTrip(t, m);
  const w = cg.watchOom(() => t.fail('no memory controller, no OOM'));
  w.close();
  t.pass('no memory controller: an empty watch');
});

t.test('controllers not mounted (no mountinfo line) are left out too', async (t) => {
  const { roots } = fakeHost(t);
  const mi = path.join(roots.procRoot, 'self/mountinfo');
  fs.writeFileSync(mi, fs.readFileSync(mi, 'utf8').split('\n').filter((l) => !/rw,(memory|pids)$/.test(l)).join('\n'));
  const cg = cgroupOfPid(PID, roots);
  t.notOk('memory' in cg.paths);
  t.notOk('pids' in cg.paths);
  const m = v1(cg);
  t.equal(m.memory, undefined);
  t.equal(m.pids, undefined);
  t.ok(m.blkio);
});

t.test('hugetlb: no hugepages on the host means no hugetlb stats', async (t) => {
  const { roots } = fakeHost(t);
  fs.rmSync(roots.hugePagesDir, { recursive: true });
  t.equal(v1(cgroupOfPid(PID, roots)).hugetlb, undefined);
});

t.test('a missing file ends its controller quietly, keeping what was read before it (IgnoreNotExist)', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  // cpuacct: its three files are set together, or not at all.
  fs.unlinkSync(path.join(dir('cpuacct'), 'cpuacct.usage_percpu'));
  // pids: both files or no pids message.
  fs.unlinkSync(path.join(dir('pids'), 'pids.max'));
  // hugetlb: 1GB is read first and kept; 2MB misses a file.
  fs.unlinkSync(path.join(dir('hugetlb'), 'hugetlb.2MB.failcnt'));
  // blkio: /proc/partitions is needed before any entry (the message itself is already there).
  fs.unlinkSync(path.join(roots.procRoot, 'partitions'));
  // memory: without oom_control, memory.stat is kept and the usage files are not read.
  fs.unlinkSync(path.join(dir('memory'), 'memory.oom_control'));
  // rdma: one of its two files.
  fs.unlinkSync(path.join(dir('rdma'), 'rdma.max'));
  const m = v1(cg);
  t.same(m.cpu.usage, { total: 0, kernel: 0, user: 0, per_cpu: [] });
  t.same(m.cpu.throttling, { periods: 10, throttled_periods: 3, throttled_time: 123456789 }, 'cpu.stat is its own controller');
  t.equal(m.pids, undefined);
  t.same(m.hugetlb, [{ pagesize: '1GB', usage: 0, max: 1073741824, failcnt: 0 }]);
  t.same(m.blkio?.io_serviced_recursive, []);
  t.equal(m.memory?.cache, 1000);
  t.same(m.memory?.usage, { limit: 0, usage: 0, max: 0, failcnt: 0 });
  t.equal(m.memory_oom_control, undefined);
  t.equal(m.rdma, undefined);
  checkRoundTrip(t, m);
});

t.test('memory.memsw.* and memory.kmem.* missing (no swap accounting, newer kernels): only those stay 0', async (t) => {
  const { roots, dir } = fakeHost(t);
  for (const f of fs.readdirSync(dir('memory'))) if (f.startsWith('memory.memsw.') || f === 'memory.kmem.limit_in_bytes') fs.unlinkSync(path.join(dir('memory'), f));
  const m = v1(cgroupOfPid(PID, roots));
  t.same(m.memory?.usage, entry(1, 268435456));
  t.same(m.memory?.swap, { limit: 0, usage: 0, max: 0, failcnt: 0 });
  t.same(m.memory?.kernel, { ...entry(3, UNLIMITED), limit: 0 });
  t.same(m.memory?.kernel_tcp, entry(4, UNLIMITED));
});

t.test('the whole cgroup removed after loading: stats are empty, not an error', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  for (const c of ['memory', 'pids', 'blkio', 'hugetlb', 'rdma', 'cpu,cpuacct', 'freezer', 'systemd']) fs.rmSync(dir(c), { recursive: true });
  const m = v1(cg);
  // As upstream: blkio creates its message before reading any file.
  t.same(m, {
    cpu: { usage: { total: 0, kernel: 0, user: 0, per_cpu: [] }, throttling: { periods: 0, throttled_periods: 0, throttled_time: 0 } },
    blkio: {
      io_service_bytes_recursive: [], io_serviced_recursive: [], io_queued_recursive: [], io_service_time_recursive: [],
      io_wait_time_recursive: [], io_merged_recursive: [], io_time_recursive: [], sectors_recursive: [],
    },
  });
  const w = cg.watchOom(() => t.fail('no OOM from a removed cgroup'));
  w.close();
  w.close();
});

t.test('malformed files are errors, as upstream', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['memory/kubepods/c1/memory.stat', 'cache 1 2\n', /invalid format/],
    ['memory/kubepods/c1/memory.stat', 'cache lots\n', /invalid unsigned number "lots"/],
    ['cpu,cpuacct/kubepods/c1/cpuacct.stat', 'user 1\n', /expected to have 4 fields/],
    ['cpu,cpuacct/kubepods/c1/cpuacct.stat', 'usr 1 system 2\n', /expected field "user" but found "usr"/],
    ['cpu,cpuacct/kubepods/c1/cpuacct.usage_percpu', '1 x\n', /invalid unsigned number "x"/],
    ['pids/kubepods/c1/pids.max', 'lots\n', /invalid unsigned number "lots"/],
    ['blkio/kubepods/c1/blkio.io_serviced_recursive', '259:0\n', /invalid line found while parsing/],
  ];
  for (const [file, content, error] of cases) {
    const { roots } = fakeHost(t);
    fs.writeFileSync(path.join(roots.cgroupRoot, file), content);
    t.throws(() => cgroupOfPid(PID, roots).stats(), error, `${file}: ${JSON.stringify(content)}`);
  }
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir('memory'), 'memory.usage_in_bytes'), '-1\n');
  t.equal(v1(cgroupOfPid(PID, roots)).memory?.usage.usage, 0, 'a negative value is 0 (upstream parseUint)');
});

t.test('watchOom registers an eventfd for memory.oom_control in cgroup.event_control; close() releases it', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  const w = cg.watchOom(() => t.fail('a fake cgroupfs never signals'));
  const line = fs.readFileSync(path.join(dir('memory'), 'cgroup.event_control'), 'utf8');
  const match = /^(\d+) (\d+) $/.exec(line);
  t.ok(match, `"<eventfd> <oom_control fd> ": ${JSON.stringify(line)}`);
  const efd = Number(match?.[1]);
  const ofd = Number(match?.[2]);
  t.ok(fs.fstatSync(efd), 'the eventfd is open while watching');
  t.throws(() => fs.fstatSync(ofd), { code: 'EBADF' }, 'the memory.oom_control fd is closed once registered');
  w.close();
  t.throws(() => fs.fstatSync(efd), { code: 'EBADF' }, 'close() closes the eventfd');
  w.close();
});

t.test('watchOom on a memory cgroup removed before the watch: an empty watch, no throw', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  fs.rmSync(dir('memory'), { recursive: true });
  const w = cg.watchOom(() => t.fail('no OOM'));
  w.close();
  t.pass('no throw');
});
