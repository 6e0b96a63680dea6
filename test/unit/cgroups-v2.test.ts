// cgroup v2 metrics and the OOM watcher over a fake unified cgroupfs tree (this host is v1, so the
// v2 paths are only proven here): field by field against containerd/cgroups v2 Manager.Stat, and
// memory.events watched through inotify as containerd's pkg/oom/v2 does.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { checkRoundTrip as roundTrip } from './harness/metrics';
import { cgroupOfPid, type Cgroup, type V2Metrics } from '../../shim/runc/cgroups';

function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

const PID = 777;
const MAX = '18446744073709551615';

const MEMORY_FIELDS = [
  'anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback', 'anon_thp',
  'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable', 'slab_unreclaimable',
  'pgfault', 'pgmajfault', 'workingset_refault', 'workingset_activate', 'workingset_nodereclaim', 'pgrefill', 'pgscan',
  'pgsteal', 'pgactivate', 'pgdeactivate', 'pglazyfree', 'pglazyfreed', 'thp_fault_alloc', 'thp_collapse_alloc',
];

/** A unified host with the container cgroup /kubepods/c2. */
function fakeHost(t: Test): { roots: { cgroupRoot: string; procRoot: string }; dir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-cgroups-v2-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const cg = path.join(root, 'sys/fs/cgroup');
  const c = 'sys/fs/cgroup/kubepods/c2';
  writeTree(root, {
    [`proc/${PID}/cgroup`]: '0::/kubepods/c2\n',
    'sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc\n',
    [`${c}/cgroup.controllers`]: 'cpuset cpu io memory hugetlb pids rdma misc\n',
    [`${c}/cgroup.events`]: 'populated 1\nfrozen 0\n',
    [`${c}/cpu.stat`]: 'usage_usec 5000001\nuser_usec 3000001\nsystem_usec 2000000\nnr_periods 40\nnr_throttled 4\nthrottled_usec 12345\nnr_bursts 0\nburst_usec 0\n',
    // Every field plus keys upstream ignores (and a "text" value, which v2 parsing keeps as a string).
    [`${c}/memory.stat`]: MEMORY_FIELDS.map((f, i) => `${f} ${3000 + i}\n`).join('') + 'sec_pagetables 0\nzswap 9\nweird text\n',
    [`${c}/memory.current`]: '52428800\n',
    [`${c}/memory.max`]: 'max\n',
    [`${c}/memory.swap.current`]: '4096\n',
    [`${c}/memory.swap.max`]: '1073741824\n',
    [`${c}/memory.events`]: 'low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 0\n',
    [`${c}/pids.current`]: '12\n',
    [`${c}/pids.max`]: 'max\n',
    [`${c}/io.stat`]: '259:0 rbytes=1048576 wbytes=2097152 rios=30 wios=40 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6\n',
    [`${c}/hugetlb.2MB.current`]: '2097152\n',
    [`${c}/hugetlb.2MB.max`]: '4194304\n',
    [`${c}/hugetlb.2MB.rsvd.current`]: '0\n',
    [`${c}/hugetlb.2MB.rsvd.max`]: 'max\n',
    [`${c}/hugetlb.2MB.events`]: 'max 0\n',
    [`${c}/hugetlb.1GB.current`]: '0\n',
    [`${c}/hugetlb.1GB.max`]: 'max\n',
    [`${c}/rdma.current`]: 'mlx4_0 hca_handle=1 hca_object=20\n',
    [`${c}/rdma.max`]: 'mlx4_0 hca_handle=max hca_object=max\n',
  });
  return { roots: { cgroupRoot: cg, procRoot: path.join(root, 'proc') }, dir: path.join(root, c) };
}

function v2(cg: Cgroup): V2Metrics {
  const s = cg.stats();
  if (s.typeUrl !== 'io.containerd.cgroups.v2.Metrics') throw new Error(`expected v2 metrics, got ${s.typeUrl}`);
  return s.metrics;
}

const checkRoundTrip = (t: Test, metrics: object): void => roundTrip(t, 'io.containerd.cgroups.v2.Metrics', metrics);

t.test('unified host detected by cgroup.controllers; every field', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  t.equal(cg.version, 2);
  t.same(cg.paths, { unified: dir });
  const m = v2(cg);
  t.same(m.pids, { current: 12, limit: MAX }, 'pids.max "max" is MaxUint64 in v2');
  t.same(m.cpu, { usage_usec: 5000001, user_usec: 3000001, system_usec: 2000000, nr_periods: 40, nr_throttled: 4, throttled_usec: 12345 });
  MEMORY_FIELDS.forEach((f, i) => t.equal(m.memory[f], 3000 + i, `memory.${f}`));
  t.equal(m.memory.usage, 52428800, 'memory.current -> usage');
  t.equal(m.memory.usage_limit, MAX, 'memory.max "max" -> MaxUint64');
  t.equal(m.memory.swap_usage, 4096, 'memory.swap.current -> swap_usage');
  t.equal(m.memory.swap_limit, 1073741824, 'memory.swap.max -> swap_limit');
  t.same(Object.keys(m.memory).sort(), [...MEMORY_FIELDS, 'usage', 'usage_limit', 'swap_usage', 'swap_limit'].sort(), 'no other memory fields');
  t.same(m.memory_events, { low: 1, high: 2, max: 3, oom: 4, oom_kill: 5 });
  t.same(m.io, {
    usage: [
      { major: 259, minor: 0, rbytes: 1048576, wbytes: 2097152, rios: 30, wios: 40 },
      { major: 8, minor: 16, rbytes: 1, wbytes: 2, rios: 3, wios: 4 },
    ],
  });
  t.same(m.hugetlb, [
    { pagesize: '1GB', current: 0, max: MAX },
    { pagesize: '2MB', current: 2097152, max: 4194304 },
  ], 'hugetlb.<size>.current/max; the rsvd files do not override them');
  t.same(m.rdma, {
    current: [{ device: 'mlx4_0', hca_handles: 1, hca_objects: 20 }],
    limit: [{ device: 'mlx4_0', hca_handles: 4294967295, hca_objects: 4294967295 }],
  });
  checkRoundTrip(t, m);
});

t.test('cpu.stat and memory.stat are read only for controllers listed in cgroup.controllers', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir, 'cgroup.controllers'), 'pids io\n');
  const m = v2(cgroupOfPid(PID, roots));
  t.same(m.cpu, { usage_usec: 0, user_usec: 0, system_usec: 0, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 });
  t.equal(m.memory.anon, 0);
  t.equal(m.memory.usage, 52428800, 'memory.current is read regardless (as upstream)');
  t.same(m.pids, { current: 12, limit: MAX });
});

t.test('missing files: zeros, empty lists, no memory_events', async (t) => {
  const { roots, dir } = fakeHost(t);
  for (const f of fs.readdirSync(dir)) if (f !== 'cgroup.controllers') fs.unlinkSync(path.join(dir, f));
  const m = v2(cgroupOfPid(PID, roots));
  t.same(m, {
    pids: { current: 0, limit: 0 },
    cpu: { usage_usec: 0, user_usec: 0, system_usec: 0, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 },
    memory: Object.fromEntries([...MEMORY_FIELDS, 'usage', 'usage_limit', 'swap_usage', 'swap_limit'].map((f) => [f, 0])),
    io: { usage: [] },
    rdma: { current: [], limit: [] },
    hugetlb: [],
  });
  checkRoundTrip(t, m);
});

t.test('odd values: numbers for pids.max, junk in single files is 0, an empty memory.events is no message', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir, 'pids.max'), '4096\n');
  fs.writeFileSync(path.join(dir, 'pids.current'), 'junk\n');
  fs.writeFileSync(path.join(dir, 'memory.swap.max'), 'max\n');
  fs.writeFileSync(path.join(dir, 'memory.current'), 'junk\n');
  fs.writeFileSync(path.join(dir, 'memory.events'), '');
  fs.writeFileSync(path.join(dir, 'io.stat'), 'bad\n259:0 rbytes=x wbytes=2\nx:0 rbytes=1\n8:0 rbytes=1\n');
  const m = v2(cgroupOfPid(PID, roots));
  t.same(m.pids, { current: 0, limit: 4096 });
  t.equal(m.memory.swap_limit, MAX);
  t.equal(m.memory.usage, 0);
  t.equal(m.memory_events, undefined);
  t.same(m.io.usage, [{ major: 259, minor: 0, rbytes: 0, wbytes: 2, rios: 0, wios: 0 }], 'a bad value is skipped; a bad device ends the list, as upstream');
});

t.test('a cgroup that is gone: stats throw (cgroup.controllers is required, as upstream)', async (t) => {
  const { roots, dir } = fakeHost(t);
  const cg = cgroupOfPid(PID, roots);
  fs.rmSync(dir, { recursive: true });
  t.throws(() => cg.stats(), { code: 'ENOENT' });
  const w = cg.watchOom(() => t.fail('no OOM'));
  w.close();
  t.pass('watchOom on a removed cgroup: an empty watch, no throw');
});

t.test('a malformed stat file is an error', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir, 'memory.stat'), 'anon 1 2\n');
  t.throws(() => cgroupOfPid(PID, roots).stats(), /invalid format/);
});

t.test('a pid that is gone', async (t) => {
  const { roots } = fakeHost(t);
  t.throws(() => cgroupOfPid(PID + 1, roots), { message: new RegExp(`process ${PID + 1} is gone`), code: 'ENOENT' });
});

/** Resolves once count() reaches n, or rejects after ms. */
async function until(count: () => number, n: number, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (count() < n) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} (have ${count()})`);
    await sleep(10);
  }
}

const events = (oomKill: number, extra = ''): string => `low 0\nhigh 0\nmax 7\noom ${oomKill}\noom_kill ${oomKill}\n${extra}`;

t.test('OOM watcher: once per oom_kill increase, not for other changes, not after close()', async (t) => {
  const { roots, dir } = fakeHost(t);
  const file = path.join(dir, 'memory.events');
  fs.writeFileSync(file, events(0));
  let ooms = 0;
  const w = cgroupOfPid(PID, roots).watchOom(() => ooms++);
  t.teardown(() => w.close());

  fs.writeFileSync(file, events(0, 'oom_group_kill 0\n'));
  await sleep(300);
  t.equal(ooms, 0, 'a change without oom_kill going up');

  fs.writeFileSync(file, events(1));
  await until(() => ooms, 1);
  await sleep(200);
  t.equal(ooms, 1, 'oom_kill 0 -> 1: one event');

  fs.writeFileSync(file, events(1).replace('max 7', 'max 8'));
  fs.writeFileSync(path.join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n');
  await sleep(300);
  t.equal(ooms, 1, 'other counters and cgroup.events changing: nothing');

  fs.writeFileSync(file, events(3));
  await until(() => ooms, 2);
  await sleep(200);
  t.equal(ooms, 2, 'oom_kill 1 -> 3 between two reads: one event (as upstream)');

  w.close();
  fs.writeFileSync(file, events(4));
  await sleep(300);
  t.equal(ooms, 2, 'nothing after close()');
  w.close();
});

t.test('OOM watcher: counts from 0, as upstream (an earlier kill is reported with the next change)', async (t) => {
  const { roots, dir } = fakeHost(t);
  const file = path.join(dir, 'memory.events');
  fs.writeFileSync(file, events(2));
  let ooms = 0;
  const w = cgroupOfPid(PID, roots).watchOom(() => ooms++);
  t.teardown(() => w.close());
  await sleep(200);
  t.equal(ooms, 0, 'nothing until the files change');
  fs.writeFileSync(path.join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n');
  await until(() => ooms, 1);
  await sleep(200);
  t.equal(ooms, 1);
});

t.test('OOM watcher: ends when the cgroup is empty (cgroup.events populated 0), after reporting a last kill', async (t) => {
  const { roots, dir } = fakeHost(t);
  const file = path.join(dir, 'memory.events');
  fs.writeFileSync(file, events(0));
  let ooms = 0;
  const w = cgroupOfPid(PID, roots).watchOom(() => ooms++);
  t.teardown(() => w.close());
  // The init is OOM-killed and was the last process: the kill is counted, then the cgroup empties.
  fs.writeFileSync(file, events(1));
  fs.writeFileSync(path.join(dir, 'cgroup.events'), 'populated 0\nfrozen 0\n');
  await until(() => ooms, 1);
  await sleep(200);
  fs.writeFileSync(file, events(2));
  await sleep(300);
  t.equal(ooms, 1, 'the watch ended with the cgroup empty');
});

t.test('OOM watcher: the cgroup removed while watching ends the watch quietly', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.writeFileSync(path.join(dir, 'memory.events'), events(0));
  let ooms = 0;
  const w = cgroupOfPid(PID, roots).watchOom(() => ooms++);
  fs.rmSync(dir, { recursive: true });
  await sleep(300);
  t.equal(ooms, 0);
  w.close();
});

t.test('OOM watcher: no memory.events (memory controller not enabled) is an empty watch', async (t) => {
  const { roots, dir } = fakeHost(t);
  fs.unlinkSync(path.join(dir, 'memory.events'));
  const w = cgroupOfPid(PID, roots).watchOom(() => t.fail('no OOM'));
  w.close();
  t.pass('no throw');
});
