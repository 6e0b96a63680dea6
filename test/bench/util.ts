// Small helpers shared by the benchmark phases: environment knobs, medians, timing, a bounded
// worker pool, progress output. Benchmarks print figures and never assert on time; a command
// that fails is an error (it throws).
import * as fs from 'node:fs';
import { CONTAINERD_VERSIONS, type ContainerdVersion, isContainerdVersion, SYSTEM_CONTAINERD } from '../integration/harness';

/** A positive integer from the environment, or the default. */
export function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v}: expected a positive integer`);
  return n;
}

/** The benchmark's knobs (see docs/benchmarks.md). */
export const KNOBS = {
  /** Samples per latency figure (ctr, runc floor, exec); the CRI lifecycle takes half. */
  rounds: envInt('BENCH_ROUNDS', 15),
  /** Pods in the many-pods memory figure. */
  pods: envInt('BENCH_PODS', 50),
  /** Containers per throughput batch, and how many in flight. */
  throughputContainers: envInt('BENCH_THROUGHPUT_CONTAINERS', 50),
  throughputInFlight: envInt('BENCH_THROUGHPUT_INFLIGHT', 10),
  throughputRounds: envInt('BENCH_THROUGHPUT_ROUNDS', 3),
  /** Execs before the "after execs" memory sample. */
  memExecs: envInt('BENCH_MEM_EXECS', 100),
  /** Repeats of the one-pod memory figure (median). */
  memRepeats: envInt('BENCH_MEM_REPEATS', 3),
  settleMs: envInt('BENCH_SETTLE_MS', 2000),
  /** Pods created / removed at once while setting up the many-pods figure. */
  podConcurrency: envInt('BENCH_POD_CONCURRENCY', 5),
  stdoutMiB: envInt('BENCH_MIB', 256),
  stdoutRounds: envInt('BENCH_STDOUT_ROUNDS', 3),
  containerd: benchContainerd(),
};

/**
 * The containerd to measure on: BENCH_CONTAINERD=1.7|2.2|2.3 (the builds of the harness'
 * versions.ts; default 1.6, the system's). Its own Go shim is the "go" column.
 */
export function benchContainerd(): ContainerdVersion {
  const v = process.env.BENCH_CONTAINERD ?? SYSTEM_CONTAINERD;
  if (!isContainerdVersion(v)) throw new Error(`BENCH_CONTAINERD=${v}: expected one of ${CONTAINERD_VERSIONS.join(', ')}`);
  return v;
}

/** Phases to run: BENCH_ONLY=ctr,floor,stdout,cri,memory narrows them (default all). */
export function phaseEnabled(phase: string): boolean {
  const only = process.env.BENCH_ONLY;
  if (!only) return true;
  return only.split(',').map(s => s.trim()).includes(phase);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Wall time of fn in ms (fn's result is discarded; its failure propagates). */
export async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

/**
 * Run fn over items with at most `limit` in flight; results in item order. After a failure no
 * new item starts; the first failure rejects once the ones in flight have settled.
 */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
  return out;
}

const started = nowMs();

/** A progress line on stderr, stamped with the seconds since the benchmark started. */
export function progress(msg: string): void {
  process.stderr.write(`[${((nowMs() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
}

/** Resident and proportional set size of one process, KiB (undefined when it is gone). */
export function memOf(pid: number): { rssKiB: number; pssKiB: number } | undefined {
  let rollup: string;
  try {
    rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? NaN);
  return { rssKiB: field('Rss'), pssKiB: field('Pss') };
}

/**
 * `rounds` rounds of every contender in turn (the order rotates each round, so none always
 * runs right after another), after one unrecorded warm-up run of each. Returns the samples.
 */
export async function alternate<K extends string>(rounds: number, contenders: Partial<Record<K, () => Promise<number>>>): Promise<Partial<Record<K, number[]>>> {
  const entries = Object.entries(contenders) as Array<[K, () => Promise<number>]>;
  const samples: Partial<Record<K, number[]>> = {};
  for (const [k, fn] of entries) {
    await fn();
    samples[k] = [];
  }
  for (let i = 0; i < rounds; i++) {
    for (let j = 0; j < entries.length; j++) {
      const [k, fn] = entries[(i + j) % entries.length]!;
      samples[k]!.push(await fn());
    }
  }
  return samples;
}

let idCounter = 0;

/** A container / pod id unique in this run: <prefix>-<n>. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${++idCounter}`;
}

const errors: string[] = [];

/**
 * An error that must fail the run but need not stop it (a pod's teardown after its figures were
 * taken): printed under the table, written to the JSON file, and the run exits 1.
 */
export function recordError(msg: string): void {
  errors.push(msg);
  progress(`ERROR: ${msg}`);
}

export function recordedErrors(): readonly string[] {
  return errors;
}
