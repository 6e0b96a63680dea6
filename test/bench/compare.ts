// Side-by-side figures for runcts and containerd's Go shim on one containerd, alternating runs.
// Prints medians and the ratio runcts/Go. Informative: nothing here asserts on time.
//   make bench            (BENCH_ROUNDS=N to change the sample size)
import * as fs from 'node:fs';
import { RUNTIME_RUNC, RUNTIME_RUNCTS, busyboxRootfs, startContainerd, type Containerd } from '../integration/harness';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const RUNTIMES = [RUNTIME_RUNCTS, RUNTIME_RUNC] as const;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function memOf(pid: number): { rssKiB: number; pssKiB: number } {
  const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? NaN);
  return { rssKiB: field('Rss'), pssKiB: field('Pss') };
}

async function lifecycleMs(cd: Containerd, runtime: string, rootfs: string, id: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await cd.ctr(['run', '--rm', '--runtime', runtime, '--rootfs', rootfs, id, '/bin/true']);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.code !== 0) throw new Error(`${runtime}: ctr run failed: ${r.stderr}`);
  return ms;
}

async function idleMemory(cd: Containerd, runtime: string, rootfs: string, id: string) {
  await cd.ctrOk(['run', '-d', '--runtime', runtime, '--rootfs', rootfs, id, '/bin/sleep', '1000']);
  await new Promise((r) => setTimeout(r, 2000)); // let start-up garbage settle
  const shim = cd.shims().find((p) => p.argv.includes(id));
  if (!shim) throw new Error(`no shim found for ${id}`);
  const mem = memOf(shim.pid);
  await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  await cd.ctr(['task', 'wait', id]);
  await cd.ctr(['task', 'delete', id]);
  await cd.ctr(['container', 'delete', id]);
  return mem;
}

function row(name: string, unit: string, a: number, b: number): string {
  return `${name.padEnd(34)} ${a.toFixed(1).padStart(9)} ${b.toFixed(1).padStart(9)} ${unit.padEnd(4)} ${(a / b).toFixed(2).padStart(6)}`;
}

async function main(): Promise<void> {
  const cd = await startContainerd({ logLevel: 'info' });
  try {
    const rootfs = await busyboxRootfs();
    const lat: Record<string, number[]> = { [RUNTIME_RUNCTS]: [], [RUNTIME_RUNC]: [] };
    const rss: Record<string, number[]> = { [RUNTIME_RUNCTS]: [], [RUNTIME_RUNC]: [] };
    const pss: Record<string, number[]> = { [RUNTIME_RUNCTS]: [], [RUNTIME_RUNC]: [] };
    for (const r of RUNTIMES) await lifecycleMs(cd, r, rootfs, `warm-${r.split('.')[2]}`); // first-run caches
    for (let i = 0; i < ROUNDS; i++) {
      for (const r of RUNTIMES) lat[r].push(await lifecycleMs(cd, r, rootfs, `lat-${i}-${r.split('.')[2]}`));
    }
    for (let i = 0; i < 3; i++) {
      for (const r of RUNTIMES) {
        const m = await idleMemory(cd, r, rootfs, `mem-${i}-${r.split('.')[2]}`);
        rss[r].push(m.rssKiB / 1024);
        pss[r].push(m.pssKiB / 1024);
      }
    }
    console.log(`machine: ${fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? '?'}, ${require('node:os').cpus().length} cpus, node ${process.version}`);
    console.log(`${'figure (median)'.padEnd(34)} ${'runcts'.padStart(9)} ${'go shim'.padStart(9)} unit  ratio`);
    console.log(row(`ctr run --rm true (n=${ROUNDS})`, 'ms', median(lat[RUNTIME_RUNCTS]), median(lat[RUNTIME_RUNC])));
    console.log(row('idle shim RSS, 1 container', 'MiB', median(rss[RUNTIME_RUNCTS]), median(rss[RUNTIME_RUNC])));
    console.log(row('idle shim PSS, 1 container', 'MiB', median(pss[RUNTIME_RUNCTS]), median(pss[RUNTIME_RUNC])));
  } finally {
    await cd.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
