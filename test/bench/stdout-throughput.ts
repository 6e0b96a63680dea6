// stdout throughput through the shim, runcts beside containerd's Go shim, on one containerd:
// a container `cat`s a random blob (bind-mounted, page-cached) to its stdout; ctr copies the fifo
// to its own stdout, which this process reads and counts. Rate = bytes / (last byte - first
// byte), so container start-up is left out; the wall time including start is printed too.
// Rounds alternate between the runtimes. Informative: nothing here asserts on speed.
//   node dist/test/bench/stdout-throughput.js      (BENCH_MIB=256, BENCH_ROUNDS=3)
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { blobMountArgs, busyboxRootfs, randomBlob, RUNTIME_RUNC, RUNTIME_RUNCTS, startContainerd, type Containerd } from '../integration/harness';

const MIB = Number(process.env.BENCH_MIB ?? 256);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RUNTIMES = [RUNTIME_RUNCTS, RUNTIME_RUNC] as const;
const MB = 1e6;

interface Transfer {
  /** MB/s from the first to the last byte. */
  rate: number;
  /** ms from spawning ctr to its exit. */
  wallMs: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Run ctr, count its stdout, time first and last byte. */
function transfer(cd: Containerd, args: string[], expectBytes: number): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const ms = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
    const child = spawn('ctr', ['--address', cd.address, '-n', cd.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      if (code !== 0 || bytes !== expectBytes || first === undefined) {
        reject(new Error(`ctr ${args.join(' ')}: exit ${code}, ${bytes}/${expectBytes} bytes: ${err}`));
        return;
      }
      resolve({ rate: bytes / MB / ((last - first) / 1000), wallMs: ms() });
    });
  });
}

function row(name: string, unit: string, a: number, b: number): string {
  return `${name.padEnd(34)} ${a.toFixed(1).padStart(9)} ${b.toFixed(1).padStart(9)} ${unit.padEnd(5)} ${(a / b).toFixed(2).padStart(6)}`;
}

async function main(): Promise<void> {
  const blob = randomBlob(MIB << 20);
  const cd = await startContainerd({ logLevel: 'info' });
  try {
    const rootfs = await busyboxRootfs();
    const short = (r: string): string => r.split('.')[2]!;
    const run = (r: string, id: string): Promise<Transfer> =>
      transfer(cd, ['run', '--rm', '--runtime', r, ...blobMountArgs(), '--rootfs', rootfs, id, '/bin/cat', blob.containerPath], blob.size);
    const init: Record<string, Transfer[]> = { [RUNTIME_RUNCTS]: [], [RUNTIME_RUNC]: [] };
    const exec: Record<string, Transfer[]> = { [RUNTIME_RUNCTS]: [], [RUNTIME_RUNC]: [] };
    for (const r of RUNTIMES) await run(r, `warm-${short(r)}`); // page cache, first-run costs
    for (let i = 0; i < ROUNDS; i++) for (const r of RUNTIMES) init[r]!.push(await run(r, `init-${i}-${short(r)}`));
    for (const r of RUNTIMES) {
      const id = `exec-${short(r)}`;
      await cd.ctrOk(['run', '-d', '--runtime', r, ...blobMountArgs(), '--rootfs', rootfs, id, '/bin/sleep', '1000']);
    }
    try {
      for (let i = 0; i < ROUNDS; i++) {
        for (const r of RUNTIMES) {
          exec[r]!.push(await transfer(cd, ['task', 'exec', '--exec-id', `cat${i}`, `exec-${short(r)}`, '/bin/cat', blob.containerPath], blob.size));
        }
      }
    } finally {
      for (const r of RUNTIMES) {
        await cd.ctr(['task', 'delete', '--force', `exec-${short(r)}`], { timeoutMs: 30_000 });
        await cd.ctr(['container', 'delete', `exec-${short(r)}`]);
      }
    }
    const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?';
    console.log(`machine: ${cpu}, ${os.cpus().length} cpus, node ${process.version}; ${MIB} MiB per transfer, median of ${ROUNDS}`);
    console.log(`${'figure (median)'.padEnd(34)} ${'runcts'.padStart(9)} ${'go shim'.padStart(9)} unit   ratio`);
    const med = (xs: Transfer[], f: (x: Transfer) => number): number => median(xs.map(f));
    console.log(row('init stdout, first to last byte', 'MB/s', med(init[RUNTIME_RUNCTS]!, x => x.rate), med(init[RUNTIME_RUNC]!, x => x.rate)));
    console.log(row('init stdout, ctr run wall time', 'ms', med(init[RUNTIME_RUNCTS]!, x => x.wallMs), med(init[RUNTIME_RUNC]!, x => x.wallMs)));
    console.log(row('exec stdout, first to last byte', 'MB/s', med(exec[RUNTIME_RUNCTS]!, x => x.rate), med(exec[RUNTIME_RUNC]!, x => x.rate)));
    console.log(row('exec stdout, ctr task exec wall', 'ms', med(exec[RUNTIME_RUNCTS]!, x => x.wallMs), med(exec[RUNTIME_RUNC]!, x => x.wallMs)));
    console.log('ratio = runcts / go shim (MB/s: higher is better for runcts; ms: lower)');
  } finally {
    const notes = await cd.stop();
    for (const n of notes) console.error(`cleanup: ${n}`);
  }
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
