// Small synchronous readers for cgroupfs files, with the number parsing of containerd/cgroups
// (utils.go parseUint/parseKV). Values are kept as bigint until they are put into a message:
// cgroup counters and limits go past 2^53 (an unlimited v1 limit is 2^63-4096, "max" is 2^64-1).
import * as fs from 'node:fs';

/** A uint64 as protobufjs fromObject takes it: a number while exact, else its decimal string. */
export type U64 = number | string;

export const MAX_UINT64 = (1n << 64n) - 1n;

export function u64(v: bigint): U64 {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

/** An fs error meaning "not there": the cgroup, controller or file does not exist. */
export function isNotExist(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

export function readText(path: string): string {
  return fs.readFileSync(path, 'utf8');
}

/** strconv.ParseUint(s, 10, 64): plain digits that fit in 64 bits, else a thrown Error. */
export function parseUintStrict(s: string, what: string): bigint {
  if (/^[0-9]+$/.test(s)) {
    const v = BigInt(s);
    if (v <= MAX_UINT64) return v;
  }
  throw new Error(`cgroups: invalid unsigned number ${JSON.stringify(s)} in ${what}`);
}

/**
 * containerd/cgroups parseUint: as parseUintStrict, but a negative number (some kernels report -1
 * for "no value") is 0.
 */
export function parseUint(s: string, what: string): bigint {
  if (/^-[0-9]*[1-9][0-9]*$/.test(s)) return 0n;
  return parseUintStrict(s, what);
}

/** A file holding one unsigned number (trimmed), e.g. memory.usage_in_bytes. */
export function readUint(path: string): bigint {
  return parseUint(readText(path).trim(), path);
}

/** The lines of a file as the Go code scans them (no trailing empty line). */
export function lines(text: string): string[] {
  const out = text.split('\n');
  if (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out;
}

/**
 * Lines "key value" (memory.stat, cpu.stat, memory.oom_control, memory.events). A line without
 * exactly two fields is an error, as upstream's ErrInvalidFormat. With `loose`, a value that is no
 * number is kept as its text (cgroups v2 parseKV); otherwise that is an error too (v1).
 */
export function readKV(path: string, loose = false): Map<string, bigint | string> {
  const out = new Map<string, bigint | string>();
  for (const line of lines(readText(path))) {
    const f = fields(line);
    if (f.length !== 2) throw new Error(`cgroups: parsing file with invalid format failed: ${path}: ${JSON.stringify(line)}`);
    let v: bigint | string;
    try {
      v = parseUint(f[1], path);
    } catch (err) {
      if (!loose) throw err;
      v = f[1];
    }
    out.set(f[0], v);
  }
  return out;
}

/** The numeric value of key in a readKV map, 0 when absent (or not a number). */
export function kv(m: Map<string, bigint | string>, key: string): bigint {
  const v = m.get(key);
  return typeof v === 'bigint' ? v : 0n;
}

/** strings.Fields: split on runs of whitespace, no empty fields. */
export function fields(s: string): string[] {
  return s.split(/\s+/).filter((x) => x !== '');
}

/** One RDMA device line "mlx4_0 hca_handle=2 hca_object=2000" (rdma.current, rdma.max). */
export interface RdmaEntry {
  device: string;
  hca_handles: number;
  hca_objects: number;
}

/** Upstream toRdmaEntry: lines of exactly three fields; "max" is MaxUint32; a bad value leaves 0. */
export function parseRdma(text: string): RdmaEntry[] {
  const out: RdmaEntry[] = [];
  for (const line of text.split('\n')) {
    const f = fields(line);
    if (f.length !== 3) continue;
    const e: RdmaEntry = { device: f[0], hca_handles: 0, hca_objects: 0 };
    for (const kvText of f.slice(1)) {
      const parts = kvText.split('=');
      if (parts.length !== 2) continue;
      let v: number;
      if (parts[1] === 'max') {
        v = 0xffffffff;
      } else {
        try {
          const b = parseUint(parts[1], 'rdma');
          if (b > 0xffffffffn) continue;
          v = Number(b);
        } catch {
          continue;
        }
      }
      if (parts[0] === 'hca_handle') e.hca_handles = v;
      else if (parts[0] === 'hca_object') e.hca_objects = v;
    }
    out.push(e);
  }
  return out;
}
