// Load and soak (issue "Reliability", item "Load and soak"): container lifecycles and execs
// through one shim daemon, driven directly the way containerd drives it (harness/direct.ts).
// Not a tap test file: soak.test.ts runs the short variant in the suite, test/soak/main.ts the
// full one (`make soak`).
//
// One daemon: an anchor container (`sleep 100000`) lives for the whole run; the execs run in it,
// and the lifecycles (`true`, unique ids) are created, started, waited for and deleted in the same
// daemon, each followed by the Shutdown containerd sends after a task's delete (the anchor keeps
// the daemon up), as containerd does for a pod's containers. The work is cut into rounds; the
// first ones are the warm-up. After each round, with nothing in flight and every event received, the
// shim's RSS, open fds and zombie descendants are sampled. Asserted at the end:
// - every exit delivered once: per lifecycle exactly create, start, exit, delete (in order); per
//   exec exactly exec-added, exec-started, exit; exit pids are the started pids; every Wait
//   returned 0; no event for an id that was not run; the anchor's exit and delete come last;
// - no zombie among the shim's descendants (at every checkpoint and at the end);
// - open fds at the end == after the warm-up (no growth at all);
// - VmRSS at the end within `rssBoundKiB` of the warm-up value;
// - the anchor's bundle lists the same files at the end as after its start (no per-exec pid
//   files, process specs or logs).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import {
  DIRECT_NS, DirectShims, RssSampler, execSpec, listProcesses, mountsUnder, run as runAny, sleep, vmRssKiB, waitGone,
  type DirectShim, type ReceivedEvent,
} from './harness';

if (process.env.TAP === '1' && require.main === module) {
  // Picked up by `tap dist/test/integration`: a module, not a test.
  console.log('1..0 # not a tap test: soak.test.js runs the short variant, make soak the full one');
  process.exit(0);
}

export interface SoakOptions {
  /** Containers (`true`) created, started, waited for and deleted besides the anchor. */
  lifecycles: number;
  /** Execs in the anchor. */
  execs: number;
  /** Lifecycles in flight at once. */
  lifecycleConcurrency?: number;
  /** Execs in flight at once (alongside the lifecycles). */
  execConcurrency?: number;
  /** Checkpoints: the work is cut into this many rounds (default 10). */
  rounds?: number;
  /** The first this many rounds are the warm-up (default 2: 20% of the work, see docs/testing.md). */
  warmupRounds?: number;
  /** Allowed VmRSS growth, end vs after the warm-up, in KiB. */
  rssBoundKiB: number;
  /** The exec's process (default `true`). */
  execArgs?: string[];
  /** Allowed fd growth, end vs after the warm-up (default 0). */
  fdSlack?: number;
  /** Start the shim as containerd does (startup snapshot, no tap hooks: see DirectShims.start). */
  production?: boolean;
}

export interface Checkpoint {
  label: string;
  lifecycles: number;
  execs: number;
  elapsedMs: number;
  rssKiB: number;
  fds: number;
  threads: number;
  zombies: number;
}

export interface SoakFigures {
  shimPid: number;
  snapshot: boolean;
  wallMs: number;
  lifecycleMs: number;
  execMs: number;
  checkpoints: Checkpoint[];
  rssMinKiB: number;
  rssMaxKiB: number;
}

/** Exec stdio as containerd hands it: a fifo it reads (ctr, CRI), a file:// log URI, or nothing. */
type StdioMode = 'fifo' | 'file' | 'none';
const STDIO_MODES: StdioMode[] = ['fifo', 'file', 'none'];

/** Open fds of pid, as `fd -> target`. */
function openFds(pid: number): Map<string, string> {
  const fds = new Map<string, string>();
  const dir = `/proc/${pid}/fd`;
  for (const fd of fs.readdirSync(dir)) {
    try {
      fds.set(fd, fs.readlinkSync(path.join(dir, fd)));
    } catch {
      // closed while listing
    }
  }
  return fds;
}

/** A summary of fd targets by kind (socket:[123] -> socket), for the printed figures. */
function fdKinds(fds: Map<string, string>): string {
  const kinds = new Map<string, number>();
  for (const target of fds.values()) {
    const k = target.replace(/:\[\d+\]$/, '').replace(/^anon_inode:/, '');
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  return [...kinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(', ');
}

function threads(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return 0;
  }
}

/** Zombies among pid's descendants (its children, and what was reparented to it as a subreaper). */
function zombieDescendants(pid: number): string[] {
  const procs = listProcesses();
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const found: string[] = [];
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length) {
    const c = todo.pop()!;
    const p = byPid.get(c);
    if (p?.state === 'Z') found.push(`${c} (ppid ${p.ppid}, ${fs.existsSync(`/proc/${c}/comm`) ? fs.readFileSync(`/proc/${c}/comm`, 'utf8').trim() : '?'})`);
    todo.push(...(children.get(c) ?? []));
  }
  return found;
}

/** Zombies that are still there a moment later (a process that just exited is a zombie until the reaper's SIGCHLD runs). */
async function lastingZombies(pid: number): Promise<string[]> {
  let z = zombieDescendants(pid);
  for (let i = 0; i < 3 && z.length; i++) {
    await sleep(300);
    const again = new Set(zombieDescendants(pid));
    z = z.filter((x) => again.has(x));
  }
  return z;
}

/** Run n jobs, at most `limit` at once. */
async function pool(n: number, limit: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}

/** Slices of `total` over `rounds`, as even as possible. */
function split(total: number, rounds: number): number[] {
  return Array.from({ length: rounds }, (_, r) => Math.floor((total * (r + 1)) / rounds) - Math.floor((total * r) / rounds));
}

/** Run the soak as tap assertions on t; returns the figures (also printed as comments). */
export async function soak(t: Test, o: SoakOptions): Promise<SoakFigures> {
  const lc = o.lifecycleConcurrency ?? 3;
  const ec = o.execConcurrency ?? 4;
  const rounds = Math.max(2, o.rounds ?? 10);
  const warmupRounds = Math.min(rounds - 1, Math.max(1, o.warmupRounds ?? 2));
  const execArgs = o.execArgs ?? ['true'];
  const fdSlack = o.fdSlack ?? 0;
  const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
  const shims = await DirectShims.create(t);
  // Teardowns run last-registered first, so this runs before DirectShims' (which kills the shim
  // and removes the directory): a failed or timed-out run leaves containers whose shim is gone;
  // delete them and unmount their rootfs first.
  t.teardown(async () => {
    const runcRoot = `/run/containerd/runc/${DIRECT_NS}`;
    for (const id of fs.existsSync(runcRoot) ? fs.readdirSync(runcRoot) : []) {
      if (id.startsWith(`soak-${tag}-`)) await runAny('runc', ['--root', runcRoot, 'delete', '--force', id]);
    }
    for (const m of mountsUnder(shims.root).reverse()) await runAny('umount', ['-l', m]);
  });
  const events = shims.events('soak');
  await events.listen();
  t.teardown(() => events.close());
  const anchorId = `soak-${tag}-anchor`;
  const lifeId = (i: number) => `soak-${tag}-c${i}`;
  const execId = (i: number) => `x${i}`;
  const ioDir = path.join(shims.root, 'io');
  fs.mkdirSync(ioDir);

  const anchorBundle = shims.bundle(anchorId, ['sleep', '100000']);
  const shim: DirectShim = await shims.startAndConnect(t, anchorBundle, anchorId, events.socket, undefined, o.production ?? false);
  const argv = fs.readFileSync(`/proc/${shim.pid}/cmdline`, 'utf8').split('\0');
  const snapshot = argv.includes('--snapshot-blob');
  const anchorCreated = await shim.call('Create', shims.createReq(anchorId, anchorBundle));
  const anchorStarted = await shim.call('Start', { id: anchorId, exec_id: '' });
  const bundleBefore = fs.readdirSync(anchorBundle).sort();
  t.comment(`shim pid ${shim.pid} (${snapshot ? 'V8 startup snapshot' : 'compiled modules'}), anchor ${anchorId} pid ${anchorStarted.pid}`);
  t.comment(`${o.lifecycles} lifecycles (${lc} in flight) and ${o.execs} execs of ${JSON.stringify(execArgs)} (${ec} in flight, stdio ${STDIO_MODES.join('/')}), ${rounds} rounds, the first ${warmupRounds} are the warm-up`);
  t.comment(`anchor bundle after start: ${bundleBefore.join(' ')}`);

  const problems: string[] = [];
  const problem = (s: string) => {
    if (problems.length < 1000) problems.push(s);
  };
  const nonZero: string[] = [];
  const lifePids = new Map<string, number>();
  const execPids = new Map<string, number>();
  const lifecycleBundleFiles = new Map<string, number>();

  const lifecycle = async (i: number) => {
    const id = lifeId(i);
    try {
      const bundle = shims.bundle(id, ['true']);
      await shim.call('Create', shims.createReq(id, bundle));
      const waiting = shim.call('Wait', { id, exec_id: '' }, 60_000);
      const s = await shim.call('Start', { id, exec_id: '' });
      lifePids.set(id, s.pid);
      const w = await waiting;
      if (w.exit_status !== 0) nonZero.push(`${id}: ${w.exit_status}`);
      const d = await shim.call('Delete', { id, exec_id: '' });
      if (d.pid !== s.pid || d.exit_status !== 0) problem(`${id}: Delete returned pid ${d.pid} status ${d.exit_status}, started pid ${s.pid}`);
      // containerd's shim client sends Shutdown after each task's delete; the anchor keeps the daemon.
      await shim.call('Shutdown', { id, now: false });
      const files = fs.readdirSync(bundle).sort().join(' ');
      lifecycleBundleFiles.set(files, (lifecycleBundleFiles.get(files) ?? 0) + 1);
    } catch (err) {
      problem(`lifecycle ${id}: ${(err as Error).message}`);
    }
  };

  const fifoPaths = new Map<number, string>();
  const stdioFor = (i: number): { stdout: string; stderr: string } => {
    switch (STDIO_MODES[i % STDIO_MODES.length]) {
      case 'fifo': return { stdout: fifoPaths.get(i)!, stderr: fifoPaths.get(i)! };
      case 'file': return { stdout: `file://${ioDir}/execs.log`, stderr: `file://${ioDir}/execs.log` };
      default: return { stdout: '', stderr: '' };
    }
  };
  const exec = async (i: number) => {
    const exec_id = execId(i);
    let fd = -1;
    try {
      const stdio = stdioFor(i);
      // containerd opens its fifos before Exec (read side; O_RDWR here so that opening never blocks and no EOF is seen early).
      if (fifoPaths.has(i)) fd = fs.openSync(fifoPaths.get(i)!, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
      await shim.call('Exec', { id: anchorId, exec_id, terminal: false, stdin: '', ...stdio, spec: execSpec(execArgs) });
      const waiting = shim.call('Wait', { id: anchorId, exec_id }, 60_000);
      const s = await shim.call('Start', { id: anchorId, exec_id });
      execPids.set(exec_id, s.pid);
      const w = await waiting;
      if (w.exit_status !== 0) nonZero.push(`exec ${exec_id}: ${w.exit_status}`);
      const d = await shim.call('Delete', { id: anchorId, exec_id });
      if (d.pid !== s.pid || d.exit_status !== 0) problem(`exec ${exec_id}: Delete returned pid ${d.pid} status ${d.exit_status}, started pid ${s.pid}`);
    } catch (err) {
      problem(`exec ${exec_id}: ${(err as Error).message}`);
    } finally {
      if (fd >= 0) fs.closeSync(fd);
      if (fifoPaths.has(i)) fs.rmSync(fifoPaths.get(i)!, { force: true });
    }
  };

  // Diagnosis of RSS growth: RUNCTS_SOAK_HEAP_SNAPSHOTS=<dir> with NODE_OPTIONS=--heapsnapshot-signal=SIGUSR2
  // (the shim inherits it) writes the shim's heap at every checkpoint into <dir> (after the RSS sample).
  const heapDir = process.env.RUNCTS_SOAK_HEAP_SNAPSHOTS;
  const heapSnapshot = async (label: string) => {
    if (!heapDir || !/--heapsnapshot-signal=SIGUSR2/.test(process.env.NODE_OPTIONS ?? '')) return;
    const cwd = fs.readlinkSync(`/proc/${shim.pid}/cwd`);
    const old = new Set(fs.readdirSync(cwd));
    process.kill(shim.pid, 'SIGUSR2');
    await sleep(100);
    await shim.call('Connect', { id: '' }); // the snapshot is written on the shim's event loop
    fs.mkdirSync(heapDir, { recursive: true });
    for (const f of fs.readdirSync(cwd)) {
      if (!old.has(f) && f.endsWith('.heapsnapshot')) fs.renameSync(path.join(cwd, f), path.join(heapDir, `${checkpoints.length - 1}-${label.replace(/ /g, '')}.heapsnapshot`));
    }
  };
  const checkpoints: Checkpoint[] = [];
  const t0 = Date.now();
  const fdsAt: Map<string, string>[] = [];
  const checkpoint = async (label: string, lifecycles: number, execs: number) => {
    const expected = 2 + 4 * lifecycles + 3 * execs;
    // Once events went missing, later checkpoints do not wait long for them again.
    const waitMs = problems.some((p) => p.includes('events received')) ? 2_000 : 30_000;
    if (!(await events.waitFor(() => events.events.length >= expected, waitMs))) problem(`${label}: ${events.events.length} events received, ${expected} expected`);
    const zombies = await lastingZombies(shim.pid);
    for (const z of zombies) problem(`${label}: zombie ${z}`);
    const fds = openFds(shim.pid);
    fdsAt.push(fds);
    const c: Checkpoint = {
      label, lifecycles, execs, elapsedMs: Date.now() - t0,
      rssKiB: vmRssKiB(shim.pid) ?? 0, fds: fds.size, threads: threads(shim.pid), zombies: zombies.length,
    };
    checkpoints.push(c);
    await heapSnapshot(label);
    t.comment(`${label.padEnd(8)} ${String(lifecycles).padStart(6)} lifecycles ${String(execs).padStart(7)} execs  ${(c.elapsedMs / 1000).toFixed(1).padStart(6)} s  rss ${mib(c.rssKiB)}  fds ${c.fds} (${fdKinds(fds)})  threads ${c.threads}  zombies ${c.zombies}`);
    return c;
  };

  await checkpoint('start', 0, 0);
  const sampler = new RssSampler(shim.pid, 500);
  const lifeSlices = split(o.lifecycles, rounds);
  const execSlices = split(o.execs, rounds);
  let lifeDone = 0;
  let execDone = 0;
  let lifecycleMs = 0;
  let execMs = 0;
  for (let r = 0; r < rounds; r++) {
    const l0 = lifeDone;
    const e0 = execDone;
    const fifos: string[] = [];
    for (let i = e0; i < e0 + execSlices[r]!; i++) {
      if (STDIO_MODES[i % STDIO_MODES.length] !== 'fifo') continue;
      fifoPaths.set(i, path.join(ioDir, `${execId(i)}.fifo`));
      fifos.push(fifoPaths.get(i)!);
    }
    if (fifos.length) {
      const mk = spawnSync('mkfifo', fifos);
      if (mk.status !== 0) throw new Error(`mkfifo: ${mk.stderr}`);
    }
    const start = Date.now();
    await Promise.all([
      pool(lifeSlices[r]!, lc, (i) => lifecycle(l0 + i)).then(() => { lifecycleMs += Date.now() - start; }),
      pool(execSlices[r]!, ec, (i) => exec(e0 + i)).then(() => { execMs += Date.now() - start; }),
    ]);
    lifeDone += lifeSlices[r]!;
    execDone += execSlices[r]!;
    await checkpoint(r === warmupRounds - 1 ? 'warm-up' : `round ${r + 1}`, lifeDone, execDone);
    if (problems.length >= 50) {
      t.comment(`stopping after round ${r + 1}: ${problems.length} problems`);
      break;
    }
  }
  sampler.stop();
  const wallMs = Date.now() - t0;
  const warm = checkpoints[warmupRounds]!;
  let end = checkpoints[checkpoints.length - 1]!;
  const bundleAfter = fs.readdirSync(anchorBundle).sort();

  // fds are closed asynchronously after a process's last event: give a moment before calling it growth.
  for (let i = 0; i < 5 && end.fds > warm.fds + fdSlack; i++) {
    await sleep(500);
    end = { ...end, fds: openFds(shim.pid).size };
  }
  const grown = [...fdsAt[fdsAt.length - 1]!].filter(([fd, target]) => fdsAt[warmupRounds]!.get(fd) !== target);
  const rssSeries = sampler.samples.map((s) => s.kib);
  const rssMinKiB = Math.min(...rssSeries);
  const rssMaxKiB = Math.max(...rssSeries);

  // The anchor last: its exit must follow every exec's, then its delete.
  await shim.call('Kill', { id: anchorId, exec_id: '', signal: 9, all: false });
  const anchorWait = await shim.call('Wait', { id: anchorId, exec_id: '' });
  await shim.call('Delete', { id: anchorId, exec_id: '' });
  await events.waitFor(() => events.events.some((e) => e.topic === '/tasks/delete' && e.event.container_id === anchorId), 10_000);
  await shim.call('Shutdown', { id: anchorId, now: false });
  const shimGone = await waitGone(shim.pid, 15_000);

  // Every exit delivered once.
  const lifeIds = new Set(Array.from({ length: lifeDone }, (_, i) => lifeId(i)));
  const execIds = new Set(Array.from({ length: execDone }, (_, i) => execId(i)));
  const perLife = new Map<string, ReceivedEvent[]>();
  const perExec = new Map<string, ReceivedEvent[]>();
  const anchorOwn: ReceivedEvent[] = [];
  const stray: string[] = [];
  for (const e of events.events) {
    const cid = e.event.container_id as string;
    const eid = (e.event.exec_id as string) || (e.topic === '/tasks/exit' && e.event.id !== cid ? e.event.id as string : '');
    if (e.namespace !== DIRECT_NS) stray.push(`${e.topic} in namespace ${e.namespace}`);
    if (cid === anchorId && eid) {
      if (!execIds.has(eid)) stray.push(`${e.topic} for exec ${eid}`);
      else perExec.set(eid, [...(perExec.get(eid) ?? []), e]);
    } else if (cid === anchorId) anchorOwn.push(e);
    else if (lifeIds.has(cid)) perLife.set(cid, [...(perLife.get(cid) ?? []), e]);
    else stray.push(`${e.topic} for ${cid}`);
  }
  const badLife: string[] = [];
  for (const id of lifeIds) {
    const evs = perLife.get(id) ?? [];
    const topics = evs.map((e) => e.topic).join(',');
    if (topics !== '/tasks/create,/tasks/start,/tasks/exit,/tasks/delete') badLife.push(`${id}: ${topics || 'no events'}`);
    const exit = evs.find((e) => e.topic === '/tasks/exit');
    if (exit && (exit.event.pid !== lifePids.get(id) || exit.event.exit_status !== 0)) badLife.push(`${id}: TaskExit pid ${exit.event.pid} status ${exit.event.exit_status}, started ${lifePids.get(id)}`);
  }
  const badExec: string[] = [];
  for (const id of execIds) {
    const evs = perExec.get(id) ?? [];
    const topics = evs.map((e) => e.topic).join(',');
    if (topics !== '/tasks/exec-added,/tasks/exec-started,/tasks/exit') badExec.push(`${id}: ${topics || 'no events'}`);
    const exit = evs.find((e) => e.topic === '/tasks/exit');
    if (exit && (exit.event.pid !== execPids.get(id) || exit.event.exit_status !== 0)) badExec.push(`${id}: TaskExit pid ${exit.event.pid} status ${exit.event.exit_status}, started ${execPids.get(id)}`);
  }
  const lastExecExit = events.events.reduce((n, e, i) => (e.topic === '/tasks/exit' && e.event.container_id === anchorId && e.event.id !== anchorId ? i : n), -1);
  const anchorExitAt = events.events.findIndex((e) => e.topic === '/tasks/exit' && e.event.id === anchorId);

  // Figures.
  const lifeRate = lifeDone / (lifecycleMs / 1000);
  const execRate = execDone / (execMs / 1000);
  t.comment(`wall ${(wallMs / 1000).toFixed(1)} s: ${lifeDone} lifecycles in ${(lifecycleMs / 1000).toFixed(1)} s (${lifeRate.toFixed(1)}/s), ${execDone} execs in ${(execMs / 1000).toFixed(1)} s (${execRate.toFixed(1)}/s), both streams at once`);
  t.comment(`rss: start ${mib(checkpoints[0]!.rssKiB)}, after warm-up ${mib(warm.rssKiB)}, end ${mib(end.rssKiB)} (${end.rssKiB - warm.rssKiB >= 0 ? '+' : ''}${end.rssKiB - warm.rssKiB} KiB, bound ${o.rssBoundKiB} KiB); sampled every 0.5 s: min ${mib(rssMinKiB)}, max ${mib(rssMaxKiB)}`);
  t.comment(`rss at checkpoints (KiB): ${checkpoints.map((c) => c.rssKiB).join(' ')}`);
  t.comment(`fds: start ${checkpoints[0]!.fds}, after warm-up ${warm.fds}, end ${end.fds}; threads ${warm.threads} -> ${end.threads}`);
  if (grown.length) t.comment(`fds that differ from the warm-up: ${grown.map(([fd, target]) => `${fd}->${target}`).slice(0, 20).join(', ')}`);
  t.comment(`anchor bundle at the end: ${bundleAfter.join(' ')}`);
  t.comment(`lifecycle bundles after delete: ${[...lifecycleBundleFiles].map(([f, n]) => `${n}x [${f}]`).join('; ')}`);

  t.same(problems, [], `every call succeeded, every checkpoint saw its events and no zombie (${problems.length} problems)`);
  t.equal(lifeDone, o.lifecycles, `${lifeDone} lifecycles run`);
  t.equal(execDone, o.execs, `${execDone} execs run`);
  t.same(nonZero.slice(0, 20), [], `Wait returned 0 for every lifecycle and exec (${nonZero.length} did not)`);
  t.same(badLife.slice(0, 20), [], `each lifecycle: create, start, exit, delete, once each, in order, exit pid = started pid (${badLife.length} wrong)`);
  t.same(badExec.slice(0, 20), [], `each exec: exec-added, exec-started, exit, once each, in order, exit pid = started pid (${badExec.length} wrong)`);
  t.same(stray.slice(0, 20), [], `no event for an id that was not run (${stray.length})`);
  t.same(anchorOwn.map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], 'the anchor: create, start, exit, delete, once each');
  t.ok(anchorExitAt > lastExecExit, 'the anchor\'s exit after every exec\'s exit');
  const anchorExit = anchorOwn.find((e) => e.topic === '/tasks/exit');
  t.same([anchorExit?.event.pid, anchorExit?.event.exit_status, anchorWait.exit_status], [anchorCreated.pid, 137, 137], 'the anchor died of its SIGKILL: exit 137');
  t.same(checkpoints.filter((c) => c.zombies > 0).map((c) => c.label), [], 'no zombie at any checkpoint');
  if (fdSlack) t.ok(end.fds <= warm.fds + fdSlack, `open fds: ${warm.fds} after warm-up, ${end.fds} at the end (allowed growth ${fdSlack})`);
  else t.equal(end.fds, warm.fds, `open fds: ${warm.fds} after warm-up, ${end.fds} at the end`);
  t.ok(end.rssKiB - warm.rssKiB < o.rssBoundKiB, `VmRSS: ${mib(warm.rssKiB)} after warm-up, ${mib(end.rssKiB)} at the end: grew by less than ${o.rssBoundKiB} KiB`);
  const peak = checkpoints.slice(warmupRounds).reduce((m, c) => (c.rssKiB > m.rssKiB ? c : m));
  t.ok(peak.rssKiB - warm.rssKiB < o.rssBoundKiB, `VmRSS at every checkpoint after the warm-up within the bound (highest ${mib(peak.rssKiB)} at ${peak.label})`);
  t.same(bundleAfter, bundleBefore, 'the anchor\'s bundle holds no per-exec leftovers');
  if (o.lifecycles > 0) t.equal(lifecycleBundleFiles.size, 1, 'every lifecycle bundle holds the same files after delete');
  t.ok(shimGone, 'the shim exits after the anchor\'s Shutdown');
  await shims.assertNothingLeft(t);
  return { shimPid: shim.pid, snapshot, wallMs, lifecycleMs, execMs, checkpoints, rssMinKiB, rssMaxKiB };
}

/** A positive integer from the environment, else dflt. */
export function envCount(name: string, dflt: number): number {
  const n = Number(process.env[name]);
  return Number.isInteger(n) && n > 0 ? n : dflt;
}
