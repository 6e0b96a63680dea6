// cgroup v1 metrics as io.containerd.cgroups.v1.Metrics, read the way containerd's shim reads
// them: `cgroups.Load(V1, PidPath(pid)).Stat(IgnoreNotExist)` (containerd/cgroups 1.0.x).
//
// Each controller fills its part; a missing file ends that controller's part silently (what
// IgnoreNotExist does: fields read before it stay filled), any other error fails the whole call.
// The one departure: a missing memory.memsw.* / memory.kmem.* file only leaves its own value at
// 0, so a kernel without swap accounting still reports kernel memory (upstream stops there).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fields, isNotExist, kv, lines, parseRdma, parseUint, parseUintStrict, readKV, readText, readUint, u64, type RdmaEntry, type U64 } from './read';

export const V1_TYPE_URL = 'io.containerd.cgroups.v1.Metrics';

export interface HugetlbStat { usage: U64; max: U64; failcnt: U64; pagesize: string }
export interface PidsStat { current: U64; limit: U64 }
export interface CpuUsage { total: U64; kernel: U64; user: U64; per_cpu: U64[] }
export interface Throttle { periods: U64; throttled_periods: U64; throttled_time: U64 }
export interface MemoryEntry { limit: U64; usage: U64; max: U64; failcnt: U64 }
export interface MemoryOomControl { oom_kill_disable: U64; under_oom: U64; oom_kill: U64 }
export interface BlkIOEntry { op: string; device: string; major: U64; minor: U64; value: U64 }
export interface BlkIOStat {
  io_service_bytes_recursive: BlkIOEntry[];
  io_serviced_recursive: BlkIOEntry[];
  io_queued_recursive: BlkIOEntry[];
  io_service_time_recursive: BlkIOEntry[];
  io_wait_time_recursive: BlkIOEntry[];
  io_merged_recursive: BlkIOEntry[];
  io_time_recursive: BlkIOEntry[];
  sectors_recursive: BlkIOEntry[];
}
/** memory.stat counters by field name (cache, rss, ..., total_unevictable), plus the four MemoryEntry groups. */
export type MemoryStat = { usage: MemoryEntry; swap: MemoryEntry; kernel: MemoryEntry; kernel_tcp: MemoryEntry } & { [counter: string]: U64 | MemoryEntry };

export interface V1Metrics {
  hugetlb?: HugetlbStat[];
  pids?: PidsStat;
  /** Always present, as upstream creates it before any controller runs. */
  cpu: { usage: CpuUsage; throttling: Throttle };
  memory?: MemoryStat;
  blkio?: BlkIOStat;
  rdma?: { current: RdmaEntry[]; limit: RdmaEntry[] };
  memory_oom_control?: MemoryOomControl;
}

export interface V1Roots {
  procRoot: string;
  hugePagesDir: string;
}

type Stater = (dir: string, m: V1Metrics, roots: V1Roots) => void;

/** The controllers upstream has a Stat for, in the order it lists them. */
const STATERS: Array<[string, Stater]> = [
  ['pids', statPids],
  ['cpu', statCpu],
  ['cpuacct', statCpuacct],
  ['memory', statMemory],
  ['blkio', statBlkio],
  ['rdma', statRdma],
  ['hugetlb', statHugetlb],
];

/** paths: controller -> directory (only controllers that exist). */
export function statsV1(paths: Record<string, string>, roots: V1Roots): V1Metrics {
  const m: V1Metrics = {
    cpu: {
      usage: { total: 0, kernel: 0, user: 0, per_cpu: [] },
      throttling: { periods: 0, throttled_periods: 0, throttled_time: 0 },
    },
  };
  for (const [controller, stat] of STATERS) {
    const dir = paths[controller];
    if (dir === undefined) continue;
    try {
      stat(dir, m, roots);
    } catch (err) {
      if (!isNotExist(err)) throw err;
    }
  }
  return m;
}

function statPids(dir: string, m: V1Metrics): void {
  const current = readUint(path.join(dir, 'pids.current'));
  const max = readText(path.join(dir, 'pids.max')).trim();
  // "max" (no limit) is reported as 0.
  m.pids = { current: u64(current), limit: max === 'max' ? 0 : u64(parseUint(max, 'pids.max')) };
}

function statCpu(dir: string, m: V1Metrics): void {
  const stat = readKV(path.join(dir, 'cpu.stat'));
  m.cpu.throttling = {
    periods: u64(kv(stat, 'nr_periods')),
    throttled_periods: u64(kv(stat, 'nr_throttled')),
    throttled_time: u64(kv(stat, 'throttled_time')),
  };
}

/** USER_HZ: the unit of cpuacct.stat. A constant 100 on Linux (upstream hard-codes it too). */
const CLOCK_TICKS = 100n;
const NS_PER_SECOND = 1_000_000_000n;

function statCpuacct(dir: string, m: V1Metrics): void {
  const statFile = path.join(dir, 'cpuacct.stat');
  const f = fields(readText(statFile));
  if (f.length !== 4) throw new Error(`cgroups: ${JSON.stringify(statFile)} is expected to have 4 fields`);
  if (f[0] !== 'user') throw new Error(`cgroups: expected field "user" but found ${JSON.stringify(f[0])} in ${JSON.stringify(statFile)}`);
  if (f[2] !== 'system') throw new Error(`cgroups: expected field "system" but found ${JSON.stringify(f[2])} in ${JSON.stringify(statFile)}`);
  const user = (parseUintStrict(f[1], statFile) * NS_PER_SECOND) / CLOCK_TICKS;
  const kernel = (parseUintStrict(f[3], statFile) * NS_PER_SECOND) / CLOCK_TICKS;
  const total = readUint(path.join(dir, 'cpuacct.usage'));
  const percpuFile = path.join(dir, 'cpuacct.usage_percpu');
  const perCpu = fields(readText(percpuFile)).map((v) => u64(parseUintStrict(v, percpuFile)));
  // Set together, only when all three files were read.
  Object.assign(m.cpu.usage, { total: u64(total), user: u64(user), kernel: u64(kernel), per_cpu: perCpu });
}

/** Metrics field -> memory.stat key (they differ: pg_pg_in is "pgpgin", the swap limit "memsw"). */
const MEMORY_STAT_KEYS: Array<[string, string]> = [
  ['cache', 'cache'], ['rss', 'rss'], ['rss_huge', 'rss_huge'], ['mapped_file', 'mapped_file'],
  ['dirty', 'dirty'], ['writeback', 'writeback'], ['pg_pg_in', 'pgpgin'], ['pg_pg_out', 'pgpgout'],
  ['pg_fault', 'pgfault'], ['pg_maj_fault', 'pgmajfault'], ['inactive_anon', 'inactive_anon'],
  ['active_anon', 'active_anon'], ['inactive_file', 'inactive_file'], ['active_file', 'active_file'],
  ['unevictable', 'unevictable'], ['hierarchical_memory_limit', 'hierarchical_memory_limit'],
  ['hierarchical_swap_limit', 'hierarchical_memsw_limit'],
];
const MEMORY_TOTAL_KEYS = MEMORY_STAT_KEYS.filter(([f]) => !f.startsWith('hierarchical_')).map(([f, k]): [string, string] => [`total_${f}`, `total_${k}`]);

/** MemoryEntry field -> file suffix; the entries are memory.*, memory.memsw.*, memory.kmem.*, memory.kmem.tcp.*. */
const MEMORY_ENTRY_FILES: Array<[keyof MemoryEntry, string]> = [
  ['usage', 'usage_in_bytes'], ['max', 'max_usage_in_bytes'], ['failcnt', 'failcnt'], ['limit', 'limit_in_bytes'],
];
const MEMORY_MODULES: Array<['usage' | 'swap' | 'kernel' | 'kernel_tcp', string]> = [
  ['usage', 'memory.'], ['swap', 'memory.memsw.'], ['kernel', 'memory.kmem.'], ['kernel_tcp', 'memory.kmem.tcp.'],
];

function statMemory(dir: string, m: V1Metrics): void {
  const raw = readKV(path.join(dir, 'memory.stat'));
  const entry = (): MemoryEntry => ({ limit: 0, usage: 0, max: 0, failcnt: 0 });
  const mem: MemoryStat = { usage: entry(), swap: entry(), kernel: entry(), kernel_tcp: entry() };
  for (const [field, key] of [...MEMORY_STAT_KEYS, ...MEMORY_TOTAL_KEYS]) mem[field] = u64(kv(raw, key));
  m.memory = mem;

  const oom = readKV(path.join(dir, 'memory.oom_control'));
  m.memory_oom_control = {
    oom_kill_disable: u64(kv(oom, 'oom_kill_disable')),
    under_oom: u64(kv(oom, 'under_oom')),
    oom_kill: u64(kv(oom, 'oom_kill')),
  };

  for (const [name, prefix] of MEMORY_MODULES) {
    for (const [field, suffix] of MEMORY_ENTRY_FILES) {
      try {
        mem[name][field] = u64(readUint(path.join(dir, prefix + suffix)));
      } catch (err) {
        if (!isNotExist(err)) throw err;
      }
    }
  }
}

/** blkio file (without "blkio.") -> BlkIOStat list, the CFQ set upstream reads first. */
const BLKIO_CFQ: Array<[string, keyof BlkIOStat]> = [
  ['sectors_recursive', 'sectors_recursive'],
  ['io_service_bytes_recursive', 'io_service_bytes_recursive'],
  ['io_serviced_recursive', 'io_serviced_recursive'],
  ['io_queued_recursive', 'io_queued_recursive'],
  ['io_service_time_recursive', 'io_service_time_recursive'],
  ['io_wait_time_recursive', 'io_wait_time_recursive'],
  ['io_merged_recursive', 'io_merged_recursive'],
  ['time_recursive', 'io_time_recursive'],
];
/** Without CFQ (or with it but no entries), the throttle files, which every kernel has. */
const BLKIO_THROTTLE: Array<[string, keyof BlkIOStat]> = [
  ['throttle.io_serviced', 'io_serviced_recursive'],
  ['throttle.io_service_bytes', 'io_service_bytes_recursive'],
];

function statBlkio(dir: string, m: V1Metrics, roots: V1Roots): void {
  const b: BlkIOStat = {
    io_service_bytes_recursive: [], io_serviced_recursive: [], io_queued_recursive: [], io_service_time_recursive: [],
    io_wait_time_recursive: [], io_merged_recursive: [], io_time_recursive: [], sectors_recursive: [],
  };
  m.blkio = b;
  const cfq = fs.existsSync(path.join(dir, 'blkio.io_serviced_recursive'));
  const devices = readPartitions(path.join(roots.procRoot, 'partitions'));
  let size = 0;
  for (const [file, list] of cfq ? BLKIO_CFQ : []) {
    b[list].push(...readBlkioEntries(path.join(dir, `blkio.${file}`), devices));
    size += b[list].length;
  }
  if (size > 0) return;
  for (const [file, list] of BLKIO_THROTTLE) b[list].push(...readBlkioEntries(path.join(dir, `blkio.${file}`), devices));
}

/** "8:0 Read 4096" (or "8:0 4096"); the "Total N" line is skipped. */
function readBlkioEntries(file: string, devices: Map<string, string>): BlkIOEntry[] {
  const out: BlkIOEntry[] = [];
  for (const line of lines(readText(file))) {
    const f = line.split(/[ :]/).filter((x) => x !== '');
    if (f.length < 3) {
      if (f.length === 2 && f[0] === 'Total') continue;
      throw new Error(`cgroups: invalid line found while parsing ${file}: ${JSON.stringify(line)}`);
    }
    const major = parseUintStrict(f[0], file);
    const minor = parseUintStrict(f[1], file);
    const hasOp = f.length === 4;
    out.push({
      op: hasOp ? f[2] : '',
      device: devices.get(`${major}:${minor}`) ?? '',
      major: u64(major),
      minor: u64(minor),
      value: u64(parseUintStrict(f[hasOp ? 3 : 2], file)),
    });
  }
  return out;
}

/** /proc/partitions: "major:minor" -> /dev/<name>, first occurrence wins; two header lines. */
function readPartitions(file: string): Map<string, string> {
  const out = new Map<string, string>();
  lines(readText(file)).slice(2).forEach((line) => {
    const f = fields(line);
    if (f.length === 0) return;
    if (f.length < 4 || !/^[0-9]+$/.test(f[0]) || !/^[0-9]+$/.test(f[1])) throw new Error(`cgroups: invalid line in ${file}: ${JSON.stringify(line)}`);
    const key = `${BigInt(f[0])}:${BigInt(f[1])}`;
    if (!out.has(key)) out.set(key, `/dev/${f[3]}`);
  });
  return out;
}

function statRdma(dir: string, m: V1Metrics): void {
  const current = readText(path.join(dir, 'rdma.current')).split('\n');
  const max = readText(path.join(dir, 'rdma.max')).split('\n');
  // A device removed between the two reads: no rdma stats this time.
  if (current.length !== max.length) return;
  m.rdma = { current: parseRdma(current.join('\n')), limit: parseRdma(max.join('\n')) };
}

function statHugetlb(dir: string, m: V1Metrics, roots: V1Roots): void {
  for (const size of hugePageSizes(roots.hugePagesDir)) {
    const read = (name: string): U64 => u64(readUint(path.join(dir, `hugetlb.${size}.${name}`)));
    const s: HugetlbStat = { pagesize: size, usage: read('usage_in_bytes'), max: read('max_usage_in_bytes'), failcnt: read('failcnt') };
    (m.hugetlb ??= []).push(s);
  }
}

const BINARY_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };
const SIZE_NAMES = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

/**
 * The page sizes as the hugetlb files name them ("2MB", "1GB"), from the kernel's
 * hugepages-<N>kB directories, in name order (as Go's ReadDir). An unreadable name is skipped.
 */
export function hugePageSizes(hugePagesDir: string): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(hugePagesDir).sort()) {
    const match = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(name.split('-')[1] ?? '');
    if (!match) continue;
    let size = Math.trunc(parseFloat(match[1]) * (match[2] ? BINARY_UNITS[match[2].toLowerCase()] : 1));
    let unit = 0;
    while (size >= 1024 && unit < SIZE_NAMES.length - 1) {
      size /= 1024;
      unit++;
    }
    out.push(`${size}${SIZE_NAMES[unit]}`);
  }
  return out;
}
