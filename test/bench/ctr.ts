// ctr figures on one plain containerd, runcts and the Go shim in alternation (the runc floor
// takes its turn in the same rounds): container lifecycle latency, exec latency, throughput.
import { BUSYBOX_IMAGE, RUNTIME_RUNC, RUNTIME_RUNCTS, type Containerd } from '../integration/harness';
import type { RuncFloor } from './runc-floor';
import { figureOfSamples, type Figure } from './table';
import { alternate, KNOBS, nowMs, pool, progress, timeMs, uniqueId } from './util';

const SECTION = 'ctr (one containerd)';
/** Runtime type per table column. */
const RUNTIME = { runcts: RUNTIME_RUNCTS, go: RUNTIME_RUNC } as const;
type ShimColumn = keyof typeof RUNTIME;
const SHIMS = Object.keys(RUNTIME) as ShimColumn[];

export interface CtrBenchContext {
  cd: Containerd;
  rootfs: string;
  floor: RuncFloor;
}

/** `ctr run --rm` of `true`, to ctr's exit; a failure throws. */
async function ctrRunTrue(cd: Containerd, runtime: string, source: string[], timeoutMs = 60_000): Promise<number> {
  const id = uniqueId('run');
  return timeMs(() => cd.ctrOk(['run', '--rm', '--runtime', runtime, ...source, id, '/bin/true'], { timeoutMs }));
}

/** Lifecycle of `true` from the rootfs directory (beside `runc run`) and from the image. */
export async function lifecycleFigures({ cd, rootfs, floor }: CtrBenchContext): Promise<Figure[]> {
  const n = KNOBS.rounds;
  progress(`ctr: lifecycle latency, --rootfs, ${n} rounds (runcts, go, runc run)`);
  const fromRootfs = await alternate(n, {
    runcts: () => ctrRunTrue(cd, RUNTIME.runcts, ['--rootfs', rootfs]),
    go: () => ctrRunTrue(cd, RUNTIME.go, ['--rootfs', rootfs]),
    floor: () => floor.runTrue(uniqueId('floor')),
  });
  progress(`ctr: lifecycle latency, image, ${n} rounds`);
  const fromImage = await alternate(n, {
    runcts: () => ctrRunTrue(cd, RUNTIME.runcts, [BUSYBOX_IMAGE]),
    go: () => ctrRunTrue(cd, RUNTIME.go, [BUSYBOX_IMAGE]),
  });
  return [
    figureOfSamples(SECTION, `ctr run --rm --rootfs DIR true (n=${n})`, 'ms', 'lower', fromRootfs),
    figureOfSamples(SECTION, `ctr run --rm busybox-image true (n=${n})`, 'ms', 'lower', fromImage),
  ];
}

/** `ctr task exec` of `true` into a running container of each runtime, beside `runc exec`. */
export async function execFigures({ cd, rootfs, floor }: CtrBenchContext): Promise<Figure[]> {
  const n = KNOBS.rounds;
  progress(`ctr: exec latency, ${n} rounds (runcts, go, runc exec)`);
  const ids = { runcts: uniqueId('exec-runcts'), go: uniqueId('exec-go'), floor: uniqueId('exec-floor') };
  try {
    for (const s of SHIMS) await cd.ctrOk(['run', '-d', '--runtime', RUNTIME[s], '--rootfs', rootfs, ids[s], '/bin/sleep', '1000000']);
    await floor.startSleeper(ids.floor);
    const exec = (s: ShimColumn) => (): Promise<number> => timeMs(() => cd.ctrOk(['task', 'exec', '--exec-id', uniqueId('e'), ids[s], '/bin/true']));
    const samples = await alternate(n, { runcts: exec('runcts'), go: exec('go'), floor: () => floor.execTrue(ids.floor) });
    return [figureOfSamples(SECTION, `ctr task exec true (n=${n})`, 'ms', 'lower', samples)];
  } finally {
    for (const s of SHIMS) {
      await cd.ctr(['task', 'delete', '--force', ids[s]], { timeoutMs: 30_000 });
      await cd.ctr(['container', 'delete', ids[s]], { timeoutMs: 30_000 });
    }
  }
}

/** Wall ms for `count` `ctr run --rm image true` with `inFlight` at a time. */
async function batchMs(cd: Containerd, runtime: string, count: number, inFlight: number): Promise<number> {
  const t0 = nowMs();
  await pool(Array.from({ length: count }), inFlight, () => ctrRunTrue(cd, runtime, [BUSYBOX_IMAGE], 300_000));
  return nowMs() - t0;
}

/** Throughput: batches of containers run to completion, a few in flight; rounds alternate. */
export async function throughputFigures({ cd }: CtrBenchContext): Promise<Figure[]> {
  const { throughputContainers: count, throughputInFlight: inFlight, throughputRounds: rounds } = KNOBS;
  progress(`ctr: throughput, ${rounds} rounds of ${count} containers, ${inFlight} in flight`);
  const wall: Record<ShimColumn, number[]> = { runcts: [], go: [] };
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 ? [...SHIMS].reverse() : SHIMS;
    for (const s of order) wall[s].push(await batchMs(cd, RUNTIME[s], count, inFlight));
  }
  const perSecond = Object.fromEntries(SHIMS.map(s => [s, wall[s].map(ms => count / (ms / 1000))])) as Record<ShimColumn, number[]>;
  const seconds = Object.fromEntries(SHIMS.map(s => [s, wall[s].map(ms => ms / 1000)])) as Record<ShimColumn, number[]>;
  const label = `${count} x ctr run --rm image true, ${inFlight} in flight (n=${rounds})`;
  return [
    figureOfSamples(SECTION, `${label}: wall`, 's', 'lower', seconds),
    figureOfSamples(SECTION, `${label}: rate`, 'ctr/s', 'higher', perSecond),
  ];
}
