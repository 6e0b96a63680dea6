// cgroup v2 metrics as io.containerd.cgroups.v2.Metrics, read the way containerd's shim reads
// them: `cgroupsv2.LoadManager("/sys/fs/cgroup", PidGroupPath(pid)).Stat()` (containerd/cgroups
// 1.0.x). Upstream is lenient here: only cgroup.controllers must exist (its absence, e.g. the
// cgroup is gone, fails the call); a missing or unreadable value file is 0 or an empty list.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isNotExist, kv, MAX_UINT64, parseRdma, parseUint, parseUintStrict, readKV, readText, u64, type RdmaEntry, type U64 } from './read';

export const V2_TYPE_URL = 'io.containerd.cgroups.v2.Metrics';

export interface IOEntry { major: U64; minor: U64; rbytes: U64; wbytes: U64; rios: U64; wios: U64 }
export interface HugeTlbStat { current: U64; max: U64; pagesize: string }
export interface MemoryEvents { low: U64; high: U64; max: U64; oom: U64; oom_kill: U64 }

export interface V2Metrics {
  pids: { current: U64; limit: U64 };
  cpu: Record<string, U64>;
  /** memory.stat counters by field name, and usage, usage_limit, swap_usage, swap_limit. */
  memory: Record<string, U64>;
  rdma: { current: RdmaEntry[]; limit: RdmaEntry[] };
  io: { usage: IOEntry[] };
  hugetlb: HugeTlbStat[];
  /** Only when memory.events exists and is not empty. */
  memory_events?: MemoryEvents;
}

const CPU_FIELDS = ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'];

/** The memory.stat keys upstream copies; the Metrics field has the same name. */
const MEMORY_FIELDS = [
  'anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback', 'anon_thp',
  'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable', 'slab_unreclaimable',
  'pgfault', 'pgmajfault', 'workingset_refault', 'workingset_activate', 'workingset_nodereclaim', 'pgrefill', 'pgscan',
  'pgsteal', 'pgactivate', 'pgdeactivate', 'pglazyfree', 'pglazyfreed', 'thp_fault_alloc', 'thp_collapse_alloc',
];

export function statsV2(dir: string): V2Metrics {
  const controllers = readText(path.join(dir, 'cgroup.controllers')).split(/\s+/);
  // cpu.stat, memory.stat and the pids files all land in one flat map, as upstream's `out`.
  const out = new Map<string, bigint | string>();
  for (const c of ['cpu', 'memory']) {
    if (controllers.includes(c)) mergeInto(out, () => readKV(path.join(dir, `${c}.stat`), true));
  }
  for (const name of ['pids.current', 'pids.max']) {
    mergeInto(out, () => {
      const s = readText(path.join(dir, name)).trim();
      let v: bigint | string;
      try {
        v = parseUint(s, name);
      } catch {
        v = s;
      }
      return new Map([[name, v]]);
    });
  }
  const events = new Map<string, bigint | string>();
  mergeInto(events, () => readKV(path.join(dir, 'memory.events'), true));

  const memory: Record<string, U64> = {};
  for (const f of MEMORY_FIELDS) memory[f] = u64(kv(out, f));
  memory.usage = u64(readSingle(path.join(dir, 'memory.current')));
  memory.usage_limit = u64(readSingle(path.join(dir, 'memory.max')));
  memory.swap_usage = u64(readSingle(path.join(dir, 'memory.swap.current')));
  memory.swap_limit = u64(readSingle(path.join(dir, 'memory.swap.max')));

  const m: V2Metrics = {
    pids: { current: u64(pidValue(out.get('pids.current'))), limit: u64(pidValue(out.get('pids.max'))) },
    cpu: Object.fromEntries(CPU_FIELDS.map((f) => [f, u64(kv(out, f))])),
    memory,
    io: { usage: readIoStat(path.join(dir, 'io.stat')) },
    rdma: { current: readRdma(path.join(dir, 'rdma.current')), limit: readRdma(path.join(dir, 'rdma.max')) },
    hugetlb: readHugetlb(dir),
  };
  if (events.size > 0) {
    m.memory_events = {
      low: u64(kv(events, 'low')),
      high: u64(kv(events, 'high')),
      max: u64(kv(events, 'max')),
      oom: u64(kv(events, 'oom')),
      oom_kill: u64(kv(events, 'oom_kill')),
    };
  }
  return m;
}

/** Copy read()'s entries into out; a missing file adds nothing, other errors fail the call. */
function mergeInto(out: Map<string, bigint | string>, read: () => Map<string, bigint | string>): void {
  try {
    for (const [k, v] of read()) out.set(k, v);
  } catch (err) {
    if (!isNotExist(err)) throw err;
  }
}

/** pids.current/pids.max: a number, "max" as MaxUint64, anything else 0. */
function pidValue(v: bigint | string | undefined): bigint {
  if (typeof v === 'bigint') return v;
  return v === 'max' ? MAX_UINT64 : 0n;
}

/** A one-value file (memory.current, memory.max): "max" is MaxUint64; missing or bad is 0. */
function readSingle(file: string): bigint {
  let s: string;
  try {
    s = readText(file).trim();
  } catch {
    return 0n;
  }
  if (s === 'max') return MAX_UINT64;
  try {
    return parseUint(s, file);
  } catch {
    return 0n;
  }
}

/** io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device. */
function readIoStat(file: string): IOEntry[] {
  const usage: IOEntry[] = [];
  let text: string;
  try {
    text = readText(file);
  } catch {
    return usage;
  }
  for (const line of text.split('\n')) {
    const parts = line.split(' ');
    if (parts.length < 2) continue;
    const majmin = parts[0].split(':');
    if (majmin.length !== 2) continue;
    let major: bigint;
    let minor: bigint;
    try {
      major = parseUintStrict(majmin[0], file);
      minor = parseUintStrict(majmin[1], file);
    } catch {
      // Upstream stops at the first device it cannot parse, keeping what it has.
      return usage;
    }
    const e: IOEntry = { major: u64(major), minor: u64(minor), rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
    for (const pair of parts.slice(1)) {
      const kvPair = pair.split('=');
      if (kvPair.length !== 2) continue;
      const [k, v] = kvPair;
      if (k !== 'rbytes' && k !== 'wbytes' && k !== 'rios' && k !== 'wios') continue;
      try {
        e[k] = u64(parseUintStrict(v, file));
      } catch {
        continue;
      }
    }
    usage.push(e);
  }
  return usage;
}

function readRdma(file: string): RdmaEntry[] {
  try {
    return parseRdma(readText(file));
  } catch {
    return [];
  }
}

/** hugetlb.<size>.current / hugetlb.<size>.max for every size the directory has, by name. */
function readHugetlb(dir: string): HugeTlbStat[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
  const bySize = new Map<string, HugeTlbStat>();
  for (const name of names) {
    if (!name.includes('hugetlb') || !(name.endsWith('max') || name.endsWith('current'))) continue;
    const parts = name.split('.');
    const size = parts[1] ?? '';
    let v: bigint;
    try {
      const s = readText(path.join(dir, name)).trim();
      v = s === 'max' ? MAX_UINT64 : parseUintStrict(s, name);
    } catch {
      continue;
    }
    const stat = bySize.get(size) ?? { current: 0, max: 0, pagesize: size };
    // Only the two plain files count; hugetlb.<size>.rsvd.max and the like only create the entry.
    if (parts[2] === 'max') stat.max = u64(v);
    else if (parts[2] === 'current') stat.current = u64(v);
    bySize.set(size, stat);
  }
  return [...bySize.values()];
}
