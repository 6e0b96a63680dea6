// Grouping mode: with the runtime option ShimGrouping = "namespace" (TOML, handed to the shim as
// runtimeoptions.v1.Options{config_path} by `ctr run --runtime-config-path`) one runcts daemon
// serves every container of a containerd namespace; when its last container is gone it lingers
// RUNCTS_SHIM_LINGER_MS and exits only if still idle, deciding under the lock `start` holds.
//
// runcts only: containerd's Go shim (io.containerd.runc.v2) has no such mode (it groups by the
// sandbox annotation only), so unlike the other integration files nothing here runs against it.
//
// RUNCTS_TEST_SHIM_ROOT=<dir> points the runtime at another runcts tree (a copy with a
// deliberately broken shim, to prove the churn test catches the race it is about).
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import {
  busyboxRootfs,
  Containerd,
  describeResult,
  dumpContainerdLog,
  expectCode,
  findLeaks,
  isAlive,
  leakSnapshot,
  namespaceCgroups,
  processesInNamespaceCgroups,
  readProcess,
  run,
  RunResult,
  RUNC_STATE_ROOT,
  RUNTIME_RUNCTS,
  shimDaemons,
  sleep,
  startContainerd,
  waitFor,
} from './harness';

const RUNTIME = RUNTIME_RUNCTS;
/** manager.ts NAMESPACE_GROUP: the group name the namespace daemon's socket is derived from. */
const NS_GROUP = '.runcts-namespace';
const SHIM_BINARY = 'containerd-shim-runcts-v2';

function argAfter(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The namespace daemon's socket: sha256(<containerd address>/<ns>/.runcts-namespace). */
function groupSocket(cd: Containerd, ns = cd.namespace): string {
  return cd.shimSocketPath(NS_GROUP, ns);
}

function writeOptions(cd: Containerd, name: string, toml: string): string {
  const file = path.join(cd.dir, name);
  fs.writeFileSync(file, toml);
  return file;
}

interface Ctx {
  cd: Containerd;
  rootfs: string;
  /** A TOML file with ShimGrouping = "namespace". */
  grouped: string;
  /** Container ids used (for the leak check's per-id sockets). */
  ids: string[];
  id(prefix: string): string;
  /** `ctr run` with the grouping options (namespace ns, default cd's), detached or not. */
  ctrRun(id: string, args: readonly string[], opts?: { detach?: boolean; rm?: boolean; ns?: string; config?: string }): Promise<RunResult>;
}

/**
 * One containerd for test t (env passed to containerd and so to the shims), the busybox rootfs,
 * and the leak check afterwards. `extraNamespaces` are other containerd namespaces the test uses:
 * they are cleaned up too (the harness knows only cd.namespace) and checked for leftovers.
 */
async function withGroupedContainerd(
  t: Test,
  env: Record<string, string>,
  fn: (ctx: Ctx) => Promise<void>,
  opts: { extraNamespaces?: string[] } = {},
): Promise<void> {
  const cd = await startContainerd({ env });
  const extra = opts.extraNamespaces ?? [];
  t.teardown(async () => {
    if (!t.passing()) dumpContainerdLog(t, cd, 120);
    for (const ns of extra) for (const n of await cleanupNamespace(cd, ns)) t.comment(`cleanup: ${n}`);
    for (const n of await cd.stop()) t.comment(`cleanup: ${n}`);
    for (const ns of extra) for (const n of await forceCleanupNamespace(ns)) t.comment(`cleanup: ${n}`);
  });
  const alt = process.env.RUNCTS_TEST_SHIM_ROOT;
  if (alt) {
    // containerd looks the shim up in its PATH at every start: re-point the harness's symlink.
    const link = path.join(cd.binDir, SHIM_BINARY);
    fs.rmSync(link);
    fs.symlinkSync(path.join(alt, 'bin', SHIM_BINARY), link);
    t.comment(`shim binary: ${fs.readlinkSync(link)}`);
  }
  const rootfs = await busyboxRootfs();
  const grouped = writeOptions(cd, 'grouped.toml', 'ShimGrouping = "namespace"\n');
  let n = 0;
  const ctx: Ctx = {
    cd,
    rootfs,
    grouped,
    ids: [],
    id(prefix) {
      const id = `${prefix}-${++n}-${process.pid}`;
      ctx.ids.push(id);
      return id;
    },
    ctrRun(id, args, o = {}) {
      const flags = [...(o.detach ? ['-d'] : []), ...(o.rm ? ['--rm'] : [])];
      return cd.ctr(['run', ...flags, '--runtime', RUNTIME, '--runtime-config-path', o.config ?? grouped, '--rootfs', rootfs, id, ...args], {
        namespace: o.ns,
      });
    },
  };
  const before = leakSnapshot();
  try {
    await fn(ctx);
  } finally {
    // The linger must be over for the daemons to be gone: tests keep it short.
    const { leaks, notes } = await findLeaks(cd, before, { ids: [...ctx.ids, NS_GROUP] });
    for (const note of notes) t.comment(note);
    for (const ns of extra) leaks.push(...(await namespaceLeftovers(cd, ns)));
    t.same(leaks, [], 'nothing leaked (shims, mounts, sockets, task dirs, runc state, cgroups, tasks, containers; every namespace)');
  }
}

/** What a namespace other than cd.namespace left behind (the harness's leak check covers cd.namespace only). */
async function namespaceLeftovers(cd: Containerd, ns: string): Promise<string[]> {
  const out: string[] = [];
  if (shimDaemons(cd, ns).length) out.push(...shimDaemons(cd, ns).map(p => `daemon of ${ns} left: pid ${p.pid}`));
  if (fs.existsSync(groupSocket(cd, ns))) out.push(`socket of ${ns} left: ${groupSocket(cd, ns)}`);
  for (const d of [cd.taskStateDir(ns), cd.taskRootDir(ns)]) for (const e of safeReaddir(d)) out.push(`task dir left: ${path.join(d, e)}`);
  for (const e of safeReaddir(path.join(RUNC_STATE_ROOT, ns))) out.push(`runc state left: ${path.join(RUNC_STATE_ROOT, ns, e)}`);
  for (const c of namespaceCgroups(ns)) out.push(`cgroup left: ${c}`);
  const tasks = await cd.ctr(['task', 'ls', '-q'], { namespace: ns, timeoutMs: 15_000 });
  for (const id of tasks.stdout.split('\n').filter(Boolean)) out.push(`task left in ${ns}: ${id}`);
  const containers = await cd.ctr(['containers', 'ls', '-q'], { namespace: ns, timeoutMs: 15_000 });
  for (const id of containers.stdout.split('\n').filter(Boolean)) out.push(`container left in ${ns}: ${id}`);
  return out;
}

/** Through containerd, while it runs: kill and delete every task and container of ns. */
async function cleanupNamespace(cd: Containerd, ns: string): Promise<string[]> {
  if (!cd.running) return [];
  const notes: string[] = [];
  const tasks = await cd.ctr(['task', 'ls', '-q'], { namespace: ns, timeoutMs: 10_000 });
  await Promise.all(tasks.stdout.split('\n').filter(Boolean).map(async id => {
    notes.push(`task ${id} of ${ns} still present`);
    await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { namespace: ns, timeoutMs: 10_000 });
    await cd.ctr(['task', 'delete', '--force', id], { namespace: ns, timeoutMs: 15_000 });
  }));
  const containers = await cd.ctr(['containers', 'ls', '-q'], { namespace: ns, timeoutMs: 10_000 });
  await Promise.all(containers.stdout.split('\n').filter(Boolean).map(async id => {
    notes.push(`container ${id} of ${ns} still present`);
    await cd.ctr(['containers', 'delete', id], { namespace: ns, timeoutMs: 10_000 });
  }));
  return notes;
}

/** After containerd is gone (cd.stop() killed its shims): container processes, runc state and cgroups of ns. */
async function forceCleanupNamespace(ns: string): Promise<string[]> {
  const notes: string[] = [];
  const pids = processesInNamespaceCgroups(ns);
  for (const pid of pids) {
    notes.push(`killed leftover container process ${pid} of ${ns}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (pids.length) await waitFor(() => pids.every(p => !isAlive(p)), { timeoutMs: 5_000 });
  const runcRoot = path.join(RUNC_STATE_ROOT, ns);
  for (const id of safeReaddir(runcRoot)) {
    notes.push(`runc state ${id} left in ${runcRoot}`);
    await run('runc', ['--root', runcRoot, 'delete', '--force', id], { timeoutMs: 10_000 });
  }
  try {
    fs.rmdirSync(runcRoot);
  } catch {
    // not there
  }
  for (const c of namespaceCgroups(ns)) {
    try {
      fs.rmdirSync(c);
    } catch {
      // busy or gone
    }
  }
  for (const c of namespaceCgroups(ns).map(p => path.dirname(p))) {
    try {
      fs.rmdirSync(c);
    } catch {
      // busy or gone
    }
  }
  for (const h of safeReaddir('/sys/fs/cgroup')) {
    try {
      fs.rmdirSync(path.join('/sys/fs/cgroup', h, ns));
    } catch {
      // not there
    }
  }
  return notes;
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** The address file containerd reads to reconnect: every grouped container's names the namespace socket. */
function addressOf(cd: Containerd, id: string, ns = cd.namespace): string | undefined {
  try {
    return fs.readFileSync(path.join(cd.taskStateDir(ns), id, 'address'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The container whose bundle a daemon was started in (its working directory). */
function bundleIdOf(pid: number): string | undefined {
  try {
    return path.basename(fs.readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, ''));
  } catch {
    return undefined;
  }
}

async function taskStatus(cd: Containerd, id: string, ns?: string): Promise<string | undefined> {
  const r = await cd.ctr(['task', 'ls'], { namespace: ns });
  for (const l of r.stdout.split('\n').slice(1)) {
    const f = l.trim().split(/\s+/);
    if (f[0] === id) return f[2];
  }
  return undefined;
}

/** SIGKILL, wait for STOPPED, then task and container delete; each step asserted. */
async function killAndRemove(t: Test, cd: Containerd, id: string, ns?: string): Promise<void> {
  expectCode(t, await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { namespace: ns }), 0, `kill ${id}`);
  const stopped = await waitFor(async () => (await taskStatus(cd, id, ns)) === 'STOPPED', { timeoutMs: 15_000, intervalMs: 100 });
  t.ok(stopped, `${id} STOPPED`);
  expectCode(t, await cd.ctr(['task', 'delete', id], { namespace: ns }), 0, `task delete ${id}`);
  expectCode(t, await cd.ctr(['container', 'delete', id], { namespace: ns }), 0, `container delete ${id}`);
}

t.test('one daemon serves every container of a namespace; another namespace gets its own', { timeout: 120_000 }, async t => {
  const ns2 = `rcts-b${process.pid}`;
  await withGroupedContainerd(t, { RUNCTS_SHIM_LINGER_MS: '1500' }, async ({ cd, id, ctrRun }) => {
    // Six starts at once: they race for the one group and must end with one daemon.
    const sleepers = Array.from({ length: 6 }, (_, i) => ({ id: id('grp'), secs: String(3001 + i) }));
    const runs = await Promise.all(sleepers.map(s => ctrRun(s.id, ['/bin/sleep', s.secs], { detach: true })));
    runs.forEach((r, i) => expectCode(t, r, 0, `ctr run -d ${sleepers[i]!.id}`));
    if (runs.some(r => r.code !== 0)) return;

    const ds = shimDaemons(cd);
    if (!t.equal(ds.length, 1, 'exactly one runcts daemon for the six containers', { daemons: ds.map(d => d.argv.join(' ')) })) return;
    const daemon = ds[0]!;
    t.equal(argAfter(daemon.argv, '-namespace'), cd.namespace, 'the daemon serves our namespace');
    t.ok(fs.existsSync(groupSocket(cd)), 'it listens on the socket derived from the namespace group');
    for (const s of sleepers) {
      t.equal(addressOf(cd, s.id), `unix://${groupSocket(cd)}`, `${s.id}'s address file names the namespace socket`);
      t.notOk(fs.existsSync(cd.shimSocketPath(s.id)), `no per-container socket for ${s.id}`);
    }

    const ls = await cd.ctrOk(['task', 'ls']);
    const rows = ls.stdout.split('\n').slice(1).map(l => l.trim().split(/\s+/)).filter(f => f.length === 3);
    t.same(rows.map(r => r[0]).sort(), sleepers.map(s => s.id).sort(), 'task ls lists the six');
    t.ok(rows.every(r => r[2] === 'RUNNING'), 'all RUNNING');
    const pids = rows.map(r => Number(r[1]));
    t.equal(new Set(pids).size, 6, 'six distinct task pids');
    for (const s of sleepers) {
      const pid = Number(rows.find(r => r[0] === s.id)?.[1]);
      t.same(readProcess(pid)?.argv, ['/bin/sleep', s.secs], `${s.id} runs its own command`);
    }

    // Foreground runs through the same daemon: output and exit code of each.
    const fg = [id('fg'), id('fg')];
    const fgRuns = await Promise.all(fg.map(name => ctrRun(name, ['/bin/sh', '-c', 'echo $0; echo err-$0 >&2; exit 3', name], { rm: true })));
    fgRuns.forEach((r, i) => {
      expectCode(t, r, 3, `ctr run --rm ${fg[i]} exits with the container's code`);
      t.equal(r.stdout, `${fg[i]}\n`, 'its own stdout');
      t.equal(r.stderr, `err-${fg[i]}\n`, 'its own stderr');
    });
    t.same(shimDaemons(cd).map(d => d.pid), [daemon.pid], 'still the one daemon');

    // Execs into two of them land in the right container.
    for (const s of [sleepers[1]!, sleepers[4]!]) {
      const ex = await cd.ctr(['task', 'exec', '--exec-id', `x-${s.secs}`, s.id, '/bin/sh', '-c', 'tr "\\0" " " < /proc/1/cmdline; echo; exit 4']);
      expectCode(t, ex, 4, `exec in ${s.id} exits 4`);
      t.equal(ex.stdout, `/bin/sleep ${s.secs} \n`, `the exec saw ${s.id}'s init`);
    }

    // The container whose bundle the daemon started in goes first: the daemon outlives its bundle
    // (working directory, log fifo) and keeps serving the others.
    const firstId = bundleIdOf(daemon.pid);
    const first = sleepers.find(s => s.id === firstId);
    if (!t.ok(first, 'the daemon runs in one of the six bundles', { cwd: firstId })) return;
    await killAndRemove(t, cd, first!.id);
    const logMark = fs.statSync(cd.logPath).size;
    await sleep(300);
    t.same(shimDaemons(cd).map(d => d.pid), [daemon.pid], 'the daemon survived the removal of its own bundle');
    const other = sleepers.find(s => s !== first)!;
    const ex = await cd.ctr(['task', 'exec', '--exec-id', 'after', other.id, '/bin/sh', '-c', 'echo still $0', other.id]);
    expectCode(t, ex, 0, 'exec after the bundle removal');
    t.equal(ex.stdout, `still ${other.id}\n`, 'its output');
    const late = id('late');
    const lateRun = await ctrRun(late, ['/bin/sh', '-c', 'echo $0; exit 3', late], { rm: true });
    expectCode(t, lateRun, 3, 'a new container after the bundle removal');
    t.equal(lateRun.stdout, `${late}\n`, 'its output');
    t.same(shimDaemons(cd).map(d => d.pid), [daemon.pid], 'served by the same daemon');
    // The daemon started logging into the `log` fifo of the bundle it started in; containerd stops
    // reading that one when the container goes, and the daemon moves to another container's.
    const laterLines = fs.readFileSync(cd.logPath, 'utf8').slice(logMark).split('\n').filter(l => l.includes(`"pid":${daemon.pid},`));
    t.ok(laterLines.length > 0, `the daemon's log still reaches containerd after its first bundle is gone (${laterLines.length} lines)`);

    // A second namespace: its own daemon, on its own socket.
    const b = [id('nsb'), id('nsb')];
    for (const cid of b) expectCode(t, await ctrRun(cid, ['/bin/sleep', '3100'], { detach: true, ns: ns2 }), 0, `ctr run -d -n ${ns2} ${cid}`);
    const bOut = await ctrRun(id('nsb-fg'), ['/bin/sh', '-c', 'echo in-b; exit 6'], { rm: true, ns: ns2 });
    expectCode(t, bOut, 6, 'foreground run in the second namespace');
    t.equal(bOut.stdout, 'in-b\n', 'its output');
    const all = shimDaemons(cd);
    t.equal(all.length, 2, 'two namespaces, two daemons', { daemons: all.map(d => d.argv.join(' ')) });
    t.same(shimDaemons(cd, cd.namespace).map(d => d.pid), [daemon.pid], 'ours is unchanged');
    t.equal(shimDaemons(cd, ns2).length, 1, `one daemon for ${ns2}`);
    t.ok(fs.existsSync(groupSocket(cd, ns2)), 'on the socket of the second namespace');
    for (const cid of b) t.equal(addressOf(cd, cid, ns2), `unix://${groupSocket(cd, ns2)}`, `${cid}'s address file`);

    // Everything goes; then both daemons exit after their linger.
    for (const s of sleepers) if (s !== first) await killAndRemove(t, cd, s.id);
    for (const cid of b) await killAndRemove(t, cd, cid, ns2);
    t.ok(await waitFor(() => shimDaemons(cd).length === 0, { timeoutMs: 10_000 }), 'both daemons exit once idle past the linger');
    t.notOk(fs.existsSync(groupSocket(cd)), 'our socket removed');
    t.notOk(fs.existsSync(groupSocket(cd, ns2)), 'the second namespace\'s socket removed');
  }, { extraNamespaces: [ns2] });
});

t.test('an idle daemon lingers, takes a newcomer, and exits after the linger', { timeout: 60_000 }, async t => {
  const LINGER = 3000;
  await withGroupedContainerd(t, { RUNCTS_SHIM_LINGER_MS: String(LINGER) }, async ({ cd, id, ctrRun }) => {
    const c1 = id('linger');
    expectCode(t, await ctrRun(c1, ['/bin/sleep', '1000'], { detach: true }), 0, 'ctr run -d');
    const ds = shimDaemons(cd);
    if (!t.equal(ds.length, 1, 'one daemon')) return;
    const pid = ds[0]!.pid;
    const sock = groupSocket(cd);
    t.ok(fs.existsSync(sock), 'its socket exists');
    t.equal(readProcess(pid)?.argv[0], SHIM_BINARY, 'the runcts daemon');

    await killAndRemove(t, cd, c1);
    const gone1 = Date.now();
    // Never probe the socket here: a connection would push the deadline back.
    await sleep(LINGER / 2);
    t.ok(isAlive(pid), `the daemon is still there ${LINGER / 2} ms after its last container went`);
    t.ok(fs.existsSync(sock), 'and its socket');

    // A newcomer during the linger is served by the same daemon.
    const c2 = id('linger');
    const r = await ctrRun(c2, ['/bin/sh', '-c', 'echo $0; exit 3', c2], { rm: true });
    expectCode(t, r, 3, 'ctr run --rm during the linger');
    t.equal(r.stdout, `${c2}\n`, 'its output');
    t.same(shimDaemons(cd).map(d => d.pid), [pid], 'served by the lingering daemon');
    const gone2 = Date.now();
    t.comment(`second container gone ${gone2 - gone1} ms after the first`);

    await sleep(LINGER - 500);
    t.ok(isAlive(pid), `still there ${LINGER - 500} ms after the second container went (the linger started again)`);
    const exited = await waitFor(() => !isAlive(pid), { timeoutMs: 10_000, intervalMs: 20 });
    const at = Date.now() - gone2;
    t.ok(exited, `the daemon exited, ${at} ms after its last container went`);
    t.ok(at >= LINGER - 300, `not before the linger (${at} ms >= ${LINGER} ms, less the time ctr took to return)`);
    t.notOk(fs.existsSync(sock), 'its socket was removed');
    t.same(shimDaemons(cd), [], 'no daemon left');
  });
});

t.test('churn: starts keep coming while the daemon decides to exit', { timeout: 180_000 }, async t => {
  // A 1 ms linger: the namespace daemon decides to exit whenever its last container is gone, and
  // with 8 loops of `ctr run --rm` the next starts are on their way then (a container only counts
  // from its Create: a start that has just probed the socket does not keep the daemon). Every run
  // must still succeed: the decision is taken under the lock `start` holds while it probes.
  const LINGER = 1;
  const LOOPS = 8;
  const PER_LOOP = 12;
  await withGroupedContainerd(t, { RUNCTS_SHIM_LINGER_MS: String(LINGER) }, async ({ cd, id, ctrRun }) => {
    const seen = new Set<number>();
    let overlaps = 0;
    const overlapSamples: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ds = shimDaemons(cd).map(d => d.pid);
        for (const p of ds) seen.add(p);
        // A daemon keeps the start lock until it is gone: two live at once in one namespace is a
        // bug. Listed twice, so that one that exited between the reads of /proc is not counted.
        if (ds.length > 1) {
          const again = shimDaemons(cd).map(d => d.pid).filter(p => ds.includes(p));
          if (again.length > 1) {
            overlaps++;
            overlapSamples.push(again.map(p => `${p} in ${bundleIdOf(p) ?? '?'}`).join(', '));
          }
        }
        await sleep(10);
      }
    })();
    const failures: RunResult[] = [];
    let runs = 0;
    const started = Date.now();
    await Promise.all(Array.from({ length: LOOPS }, async (_, loop) => {
      for (let i = 0; i < PER_LOOP; i++) {
        const r = await ctrRun(id(`churn${loop}`), ['/bin/true'], { rm: true });
        runs++;
        if (r.code !== 0 || r.stdout !== '' || r.stderr !== '') failures.push(r);
      }
    }));
    sampling = false;
    await sampler;
    t.comment(`churn: ${runs} runs in ${Date.now() - started} ms, linger ${LINGER} ms: ${seen.size} distinct daemon pids, `
      + `${failures.length} runs failed, ${overlaps} samples with two live daemons`);
    for (const f of failures.slice(0, 3)) t.comment(describeResult(f));
    for (const o of overlapSamples.slice(0, 3)) t.comment(`two daemons at once: ${o}`);
    t.equal(runs, LOOPS * PER_LOOP, 'every run finished');
    t.equal(failures.length, 0, 'every ctr run --rm exited 0 with no output');
    t.ok(seen.size > 1, `the daemon really exited in between (${seen.size} daemons)`);
    t.equal(overlaps, 0, 'never two live daemons for the namespace');
    t.ok(await waitFor(() => shimDaemons(cd).length === 0, { timeoutMs: 10_000 }), 'the last daemon exits');
    t.notOk(fs.existsSync(groupSocket(cd)), 'its socket removed');
  });
});

t.test('ShimGrouping values: "pod" is per container, anything else is refused', { timeout: 60_000 }, async t => {
  await withGroupedContainerd(t, {}, async ({ cd, id, ctrRun }) => {
    const bad = writeOptions(cd, 'bad.toml', 'ShimGrouping = "cluster"\n');
    const c = id('bad');
    const r = await ctrRun(c, ['/bin/true'], { rm: true, config: bad });
    t.not(r.code, 0, 'ctr run fails', { result: describeResult(r) });
    t.match(r.stderr, /ShimGrouping must be one of pod, namespace, not "cluster"/, 'the error names the option, the allowed values and the value');
    t.match(r.stderr, new RegExp(bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'and the options file');
    t.same(shimDaemons(cd), [], 'no daemon started');
    t.notOk(fs.existsSync(groupSocket(cd)), 'no namespace socket');
    t.notOk(fs.existsSync(cd.shimSocketPath(c)), 'no per-container socket');
    t.same(safeReaddir(cd.taskStateDir()), [], 'no bundle left');

    const wrongType = writeOptions(cd, 'type.toml', 'ShimGrouping = 2\n');
    const r2 = await ctrRun(id('bad'), ['/bin/true'], { rm: true, config: wrongType });
    t.not(r2.code, 0, 'a number is refused too');
    t.match(r2.stderr, /ShimGrouping must be a string, not number/, 'with its own message');

    // "pod" is the default behaviour: one daemon per container.
    const pod = writeOptions(cd, 'pod.toml', 'ShimGrouping = "pod"\n');
    const p = [id('pod'), id('pod')];
    for (const cid of p) expectCode(t, await ctrRun(cid, ['/bin/sleep', '1000'], { detach: true, config: pod }), 0, `ctr run -d ${cid} (pod)`);
    t.equal(shimDaemons(cd).length, 2, '"pod": one daemon per container');
    for (const cid of p) t.equal(addressOf(cd, cid), `unix://${cd.shimSocketPath(cid)}`, `${cid} on its own socket`);
    t.notOk(fs.existsSync(groupSocket(cd)), 'no namespace socket');
    for (const cid of p) await killAndRemove(t, cd, cid);
    // A pod daemon does not linger (no RUNCTS_SHIM_LINGER_MS here, and it would be ignored).
    t.ok(await waitFor(() => shimDaemons(cd).length === 0, { timeoutMs: 3_000 }), 'pod daemons exit with their container');
  });
});
