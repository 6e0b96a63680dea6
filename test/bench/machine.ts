// The machine the figures come from: cpus, memory, kernel, cgroup version, versions of node,
// containerd, runc and the two shims.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot, run } from '../integration/harness';

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
  /** 1, 5 and 15 minute load averages when the run started (other work on the machine skews figures). */
  loadAtStart: number[];
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 10_000 });
  return r.code === 0 ? (r.stdout.split('\n')[0] ?? '').trim() : `? (${cmd} ${args.join(' ')}: exit ${r.code})`;
}

export async function describeMachine(): Promise<Machine> {
  const memKiB = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN);
  const [containerd, runc, goShim, commit, dirty] = await Promise.all([
    firstLine('containerd', ['--version']),
    firstLine('runc', ['--version']),
    run('containerd-shim-runc-v2', ['-v'], { timeoutMs: 10_000 }).then(r => /Version:\s*(\S+)/.exec(r.stdout)?.[1] ?? '?'),
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
  };
}

export function renderMachine(m: Machine): string {
  return [
    `machine: ${m.cpu}, nproc ${m.nproc}, ${m.memTotalGiB} GiB, kernel ${m.kernel}, cgroup ${m.cgroup}`,
    `node ${m.node}; ${m.containerd}; ${m.runc}; go shim ${m.goShim}; runcts ${m.runctsCommit}`,
    `load average at start: ${renderLoad(m.loadAtStart)}${busyWarning(m.loadAtStart, m.nproc)}`,
  ].join('\n');
}

export function renderLoad(load: readonly number[]): string {
  return load.map(x => x.toFixed(2)).join(' ');
}

/** A warning when the machine was busy (1-minute load above half the cpus), else ''. */
export function busyWarning(load: readonly number[], nproc: number): string {
  return load[0]! > nproc / 2 ? ` (BUSY: other work on the machine skews the figures, runcts' node start-ups most)` : '';
}
