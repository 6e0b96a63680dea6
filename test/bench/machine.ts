// The machine the figures come from: cpus, memory, kernel, cgroup version, versions of node,
// containerd, runc and the two shims.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot, run, type ContainerdDist } from '../integration/harness';

export interface Machine {
  cpu: string;
  nproc: number;
  memTotalGiB: number;
  kernel: string;
  cgroup: 'v1' | 'v2';
  node: string;
  containerd: string;
  runc: string;
  goShim: string;
  runctsCommit: string;
  /** 1, 5 and 15 minute load averages when the run started (they include `make bench`'s own build). */
  loadAtStart: number[];
  /** Share of all cpus busy during 2 s before anything of the benchmark runs: other work on the machine. */
  cpuBusyAtStart: number;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 10_000 });
  return r.code === 0 ? (r.stdout.split('\n')[0] ?? '').trim() : `? (${cmd} ${args.join(' ')}: exit ${r.code})`;
}

/** The machine, with the containerd and Go shim of dist (the ones the benchmark runs). */
export async function describeMachine(dist: ContainerdDist): Promise<Machine> {
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN);
  const [containerd, runc, goShim, commit, dirty] = await Promise.all([
    firstLine(dist.containerd, ['--version']),
    firstLine('runc', ['--version']),
    run(dist.goShim, ['-v'], { timeoutMs: 10_000 }).then(r => /Version:\s*(\S+)/.exec(r.stdout)?.[1] ?? '?'),
    firstLine('git', ['-C', repoRoot(), 'rev-parse', '--short', 'HEAD']),
    run('git', ['-C', repoRoot(), 'status', '--porcelain', '--', 'shim', 'addon', 'bin'], { timeoutMs: 10_000 }),
  ]);
  return {
    cpu: /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '?',
    nproc: os.cpus().length,
    memTotalGiB: Math.round((memKiB / 1024 / 1024) * 10) / 10,
    kernel: os.release(),
    cgroup: fs.existsSync(path.join('/sys/fs/cgroup', 'cgroup.controllers')) ? 'v2' : 'v1',
    node: process.version,
    containerd,
    runc,
    goShim,
    runctsCommit: commit + (dirty.stdout.trim() ? ' (+ uncommitted shim changes)' : ''),
    loadAtStart: os.loadavg(),
    cpuBusyAtStart: await cpuBusy(2000),
  };
}

export function renderMachine(m: Machine): string {
  return [
    `machine: ${m.cpu}, nproc ${m.nproc}, ${m.memTotalGiB} GiB, kernel ${m.kernel}, cgroup ${m.cgroup}`,
    `node ${m.node}; ${m.containerd}; ${m.runc}; go shim ${m.goShim}; runcts ${m.runctsCommit}`,
    `cpu busy before the run: ${renderBusy(m)}; load average ${renderLoad(m.loadAtStart)}`,
  ].join('\n');
}

export function renderLoad(load: readonly number[]): string {
  return load.map(x => x.toFixed(2)).join(' ');
}

/** Busy and total jiffies over all cpus, from /proc/stat. */
function cpuTimes(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is inside user)
  return { busy: total - f[3]! - f[4]!, total }; // minus idle and iowait
}

/** Fraction of cpu time spent busy, machine-wide, over the next `ms`. */
async function cpuBusy(ms: number): Promise<number> {
  const a = cpuTimes();
  await new Promise(r => setTimeout(r, ms));
  const b = cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/** The cpu use at start, with a warning when other work keeps the machine busy. */
export function renderBusy(m: Machine): string {
  const pct = `${Math.round(m.cpuBusyAtStart * 100)}%`;
  return m.cpuBusyAtStart > 0.25 ? `${pct} (BUSY: other work on the machine skews the figures, runcts' node start-ups most)` : pct;
}
