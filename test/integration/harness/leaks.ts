// Leak check, run after every scenario: whatever a scenario started must be gone when it ends.
import * as fs from 'node:fs';
import type { Test } from 'tap';
import * as path from 'node:path';
import { Containerd, namespaceCgroups, RUNC_STATE_ROOT, SHIM_SOCKET_DIR } from './containerd';
import { listProcesses, mountsUnder, unixSocketPathsOf, waitFor } from './proc';

export interface LeakSnapshot {
  /** Entries of /run/containerd/s/ before the scenario. */
  sockets: Set<string>;
}

export interface LeakCheckOptions {
  /**
   * Container ids the scenario used: their shim sockets (/run/containerd/s/sha256(address/ns/id),
   * and the 2.x Go shim's sha256(address/ns/id/debug)) must be gone.
   */
  ids?: readonly string[];
  /** How long shims may take to exit after the last ctr command returned (default 10 s). */
  graceMs?: number;
  /**
   * Count every new socket under /run/containerd/s/ as a leak, even one no process of this
   * containerd can be tied to. Default: RUNCTS_STRICT_LEAKS=1 in the environment (.ci/run
   * sets it; on a shared development machine other people's containerds create sockets there).
   */
  strictSockets?: boolean;
}

export interface LeakReport {
  /** Leaks: the scenario fails on any. */
  leaks: string[];
  /** Things that look odd but cannot be tied to this containerd (non-strict mode only). */
  notes: string[];
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** Take before a scenario. */
export function leakSnapshot(): LeakSnapshot {
  return { sockets: new Set(safeReaddir(SHIM_SOCKET_DIR)) };
}

/** Shim processes of cd (either runtime's binary: all carry `-address <cd.address>`). */
function shimLeaks(cd: Containerd): string[] {
  return cd.shims().map(p => `shim process left: pid ${p.pid}: ${p.argv.join(' ')}`);
}

/**
 * Everything left behind by the scenario. Shims get graceMs to exit (containerd waits for the
 * shim's connection to close, not for its process to be reaped).
 */
export async function findLeaks(cd: Containerd, before: LeakSnapshot, opts: LeakCheckOptions = {}): Promise<LeakReport> {
  const strict = opts.strictSockets ?? process.env.RUNCTS_STRICT_LEAKS === '1';
  const leaks: string[] = [];
  const notes: string[] = [];

  await waitFor(() => shimLeaks(cd).length === 0, { timeoutMs: opts.graceMs ?? 10_000, intervalMs: 50 });
  leaks.push(...shimLeaks(cd));
  const ourPrefix = cd.dir + '/';

  for (const m of mountsUnder(cd.dir)) leaks.push(`mount left: ${m}`);

  for (const d of [cd.taskStateDir(), cd.taskRootDir()]) {
    for (const e of safeReaddir(d)) leaks.push(`task dir left: ${path.join(d, e)}`);
  }

  const expected = new Set((opts.ids ?? []).flatMap(id => [cd.shimSocketPath(id), cd.shimSocketPath(id, cd.namespace, true)]));
  const newSockets = safeReaddir(SHIM_SOCKET_DIR).filter(s => !before.sockets.has(s));
  if (newSockets.length) {
    // Tie sockets to processes: one held by a process whose argv names our directory (shims
    // carry `-address <dir>/c.sock`) is ours.
    const holders = new Map<string, number>();
    for (const p of listProcesses()) {
      if (p.state === 'Z' || !p.argv.some(a => a.startsWith(ourPrefix))) continue;
      for (const sock of unixSocketPathsOf(p.pid)) holders.set(sock, p.pid);
    }
    for (const s of newSockets) {
      const full = path.join(SHIM_SOCKET_DIR, s);
      const holder = holders.get(full);
      const by = holder !== undefined ? ` (held by pid ${holder})` : '';
      if (expected.has(full) || holder !== undefined) leaks.push(`shim socket left: ${full}${by}`);
      else if (strict) leaks.push(`new socket under ${SHIM_SOCKET_DIR}: ${full}`);
      else notes.push(`new socket under ${SHIM_SOCKET_DIR} not tied to this containerd (another test's?): ${full}`);
    }
  }
  // Sockets of our ids that existed before the scenario (ids reused) must be gone as well.
  for (const s of expected) if (fs.existsSync(s) && !leaks.some(l => l.includes(s))) leaks.push(`shim socket left: ${s}`);

  for (const e of safeReaddir(path.join(RUNC_STATE_ROOT, cd.namespace))) leaks.push(`runc state left: ${path.join(RUNC_STATE_ROOT, cd.namespace, e)}`);
  for (const c of namespaceCgroups(cd.namespace)) leaks.push(`cgroup left: ${c}`);

  if (cd.running) {
    const tasks = await cd.ctr(['task', 'ls', '-q'], { timeoutMs: 15_000 });
    if (tasks.code !== 0) leaks.push(`ctr task ls failed: ${tasks.stderr.trim()}`);
    for (const id of tasks.stdout.split('\n').filter(Boolean)) leaks.push(`task left in containerd: ${id}`);
    const containers = await cd.ctr(['containers', 'ls', '-q'], { timeoutMs: 15_000 });
    for (const id of containers.stdout.split('\n').filter(Boolean)) leaks.push(`container left in containerd: ${id}`);
  }
  return { leaks, notes };
}

/** Assert that nothing leaked since `before`; notes are printed as comments. */
export async function assertNoLeaks(t: Test, cd: Containerd, before: LeakSnapshot, opts: LeakCheckOptions = {}): Promise<boolean> {
  const { leaks, notes } = await findLeaks(cd, before, opts);
  for (const n of notes) t.comment(n);
  return t.same(leaks, [], 'nothing leaked (shims, mounts, sockets, task dirs, runc state, cgroups, tasks, containers)');
}
