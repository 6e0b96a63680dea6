// stdout throughput through the shim, runcts beside containerd's Go shim, on one containerd:
// a container `cat`s a random blob (bind-mounted, page-cached) to its stdout; ctr copies the fifo
// to its own stdout, which this process reads and counts. Rate = bytes / (last byte - first
// byte), so container start-up is left out; the wall time including start is reported too.
// Rounds alternate between the runtimes. Informative: nothing here asserts on speed.
// Part of `make bench` (test/bench/main.ts); alone:
//   node dist/test/bench/stdout-throughput.js      (BENCH_MIB=256, BENCH_STDOUT_ROUNDS=3)
import { spawn } from 'node:child_process';
import { blobMountArgs, busyboxRootfs, randomBlob, RUNTIME_RUNC, RUNTIME_RUNCTS, startContainerd, type Containerd } from '../integration/harness';
import { figureOfSamples, renderTable, type Figure } from './table';
import { KNOBS, progress, uniqueId } from './util';

const SECTION = 'stdout through the fifo (ctr, one containerd)';
const RUNTIME = { runcts: RUNTIME_RUNCTS, go: RUNTIME_RUNC } as const;
type ShimColumn = keyof typeof RUNTIME;
const SHIMS = Object.keys(RUNTIME) as ShimColumn[];
const MB = 1e6;

interface Transfer {
  /** MB/s from the first to the last byte. */
  rate: number;
  /** ms from spawning ctr to its exit. */
  wallMs: number;
  /** Bytes that never arrived (only ever non-zero for the Go shim, see `lossNote`). */
  lost: number;
}

/**
 * Run ctr, count its stdout, time first and last byte. A non-zero exit or no output throws; so
 * does missing output unless `tolerateLoss` (the Go shim: containerd 1.6's shim now and then drops
 * the last output of a process that exits, cf. concourse/concourse#6775 and ctr-parallel.test.ts;
 * counted and reported, not an error of the benchmark). runcts must deliver every byte.
 */
function transfer(cd: Containerd, args: string[], expectBytes: number, tolerateLoss: boolean): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const ms = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
    const child = spawn(cd.ctrPath, ['--address', cd.address, '-n', cd.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let first: number | undefined;
    let last = 0;
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.stdout.on('data', (b: Buffer) => {
      first ??= ms();
      last = ms();
      bytes += b.length;
    });
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('close', code => {
      clearTimeout(timer);
      if (code !== 0 || first === undefined || bytes > expectBytes || (bytes < expectBytes && !tolerateLoss)) {
        reject(new Error(`ctr ${args.join(' ')}: exit ${code}, ${bytes}/${expectBytes} bytes: ${err}`));
        return;
      }
      resolve({ rate: bytes / MB / ((last - first) / 1000), wallMs: ms(), lost: expectBytes - bytes });
    });
  });
}

type Samples = Record<ShimColumn, Transfer[]>;

/** "go shim: 1 of 3 transfers short (24576 bytes lost)", or undefined when nothing was lost. */
function lossNote(samples: Samples): string | undefined {
  const parts = SHIMS.flatMap(s => {
    const short = samples[s].filter(x => x.lost > 0);
    return short.length ? [`${s === 'go' ? 'go shim' : s}: ${short.length} of ${samples[s].length} transfers short (${short.map(x => x.lost).join(', ')} bytes lost)`] : [];
  });
  return parts.length ? `${parts.join('; ')}; the Go shim's known loss of a process's last output (concourse/concourse#6775), counted, not an error.` : undefined;
}

function figures(what: string, verb: string, samples: Samples, n: number, mib: number): Figure[] {
  const pick = (f: (x: Transfer) => number): Record<ShimColumn, number[]> => ({ runcts: samples.runcts.map(f), go: samples.go.map(f) });
  return [
    figureOfSamples(SECTION, `${what} stdout ${mib} MiB, first to last byte (n=${n})`, 'MB/s', 'higher', pick(x => x.rate), lossNote(samples)),
    figureOfSamples(SECTION, `${what} stdout ${mib} MiB, ${verb} wall time (n=${n})`, 'ms', 'lower', pick(x => x.wallMs)),
  ];
}

/** The stdout figures: a container's init `cat`ting the blob, and an exec doing the same. */
export async function stdoutFigures(cd: Containerd, rootfs: string, mib = KNOBS.stdoutMiB, rounds = KNOBS.stdoutRounds): Promise<Figure[]> {
  progress(`stdout: ${rounds} rounds of ${mib} MiB through init and exec stdio`);
  const blob = randomBlob(mib << 20);
  const run = (s: ShimColumn): Promise<Transfer> =>
    transfer(cd, ['run', '--rm', '--runtime', RUNTIME[s], ...blobMountArgs(), '--rootfs', rootfs, uniqueId(`cat-${s}`), '/bin/cat', blob.containerPath], blob.size, s === 'go');
  const init: Samples = { runcts: [], go: [] };
  const exec: Samples = { runcts: [], go: [] };
  for (const s of SHIMS) await run(s); // page cache, first-run costs
  for (let i = 0; i < rounds; i++) for (const s of i % 2 ? [...SHIMS].reverse() : SHIMS) init[s].push(await run(s));
  const ids = { runcts: uniqueId('cat-exec-runcts'), go: uniqueId('cat-exec-go') };
  try {
    for (const s of SHIMS) await cd.ctrOk(['run', '-d', '--runtime', RUNTIME[s], ...blobMountArgs(), '--rootfs', rootfs, ids[s], '/bin/sleep', '1000000']);
    for (let i = 0; i < rounds; i++) {
      for (const s of i % 2 ? [...SHIMS].reverse() : SHIMS) {
        exec[s].push(await transfer(cd, ['task', 'exec', '--exec-id', uniqueId('cat'), ids[s], '/bin/cat', blob.containerPath], blob.size, s === 'go'));
      }
    }
  } finally {
    for (const s of SHIMS) {
      await cd.ctr(['task', 'delete', '--force', ids[s]], { timeoutMs: 30_000 });
      await cd.ctr(['container', 'delete', ids[s]], { timeoutMs: 30_000 });
    }
  }
  return [...figures('init', 'ctr run', init, rounds, mib), ...figures('exec', 'ctr task exec', exec, rounds, mib)];
}

async function main(): Promise<void> {
  const cd = await startContainerd({ logLevel: 'info', version: KNOBS.containerd });
  try {
    console.log(renderTable(await stdoutFigures(cd, await busyboxRootfs())));
  } finally {
    for (const n of await cd.stop()) console.error(`cleanup: ${n}`);
  }
}

if (require.main === module) {
  main().catch(err => {
    console.error(err);
    process.exit(1);
  });
}
