// Issue 13, the test matrix: the core scenarios on every containerd in use besides Debian's 1.6
// (which the rest of the suite covers): 1.7, 2.2 and 2.3, from the builds in the dist directory
// (harness/versions.ts; RUNCTS_CONTAINERD_DIST, RUNCTS_TEST_CONTAINERD narrows the list). Each
// runs for that version's own Go shim (io.containerd.runc.v2, resolved through containerd's PATH)
// and for runcts, each with its own containerd of that version and the leak check after it:
// ctr lifecycle, stdio, exit ordering under the delay hooks, containerd restart, the CRI pod
// flow, grouping; on 2.x also what containerd's Introspection API learns from `<shim> -info`.
// A version whose build is missing is reported as skipped, with the reason.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import {
  assertOrderingResult,
  BUSYBOX_IMAGE,
  Containerd,
  containerPid,
  containerdUnavailable,
  containerdVersionsUnderTest,
  ContainerdVersion,
  criScenario,
  describeResult,
  describeStreaming,
  execsWhileInitExits,
  expectCode,
  feedStdin,
  HOOK_AFTER_RUNC_EXEC,
  HOOK_EXEC_EXIT,
  isAlive,
  isShimOfHandler,
  killTask,
  OCI_FEATURES_TYPE,
  readProcess,
  RUNTIME_PLUGIN_ID,
  RUNTIME_PLUGIN_TYPE,
  RUNTIME_RUNC,
  RUNTIME_RUNCTS,
  runtimeInfo,
  runtimesUnderTest,
  scenario,
  ScenarioContext,
  sha256Hex,
  shimDaemons,
  shimsOf,
  taskList,
  taskPs,
  taskRow,
  waitFor,
} from './harness';

/** The shim process serves runtime: this version's Go shim binary, or runcts. */
function isShimOf(cd: Containerd, runtime: string, argv: readonly string[]): boolean {
  if (runtime === RUNTIME_RUNC) return argv[0] === cd.dist.goShim || (cd.version === '1.6' && path.basename(argv[0] ?? '') === 'containerd-shim-runc-v2');
  return argv.some(a => /containerd-shim-runcts-v2$|dist\/shim\/main\.js$/.test(a));
}

/** `ctr run -d <image> id ...argv` → its pid from task ls (undefined, after failing t, when it did not run). */
async function runDetached(t: Test, cd: Containerd, runtime: string, id: string, argv: string[], extra: string[] = []): Promise<number | undefined> {
  const r = await cd.ctr(['run', '-d', '--runtime', runtime, ...extra, BUSYBOX_IMAGE, id, ...argv]);
  if (!expectCode(t, r, 0, `ctr run -d ${id}`)) return undefined;
  const row = await taskRow(cd, id);
  if (!t.ok(row && row.status === 'RUNNING' && row.pid > 0, `${id}: task ls RUNNING with a pid`, { tasks: await taskList(cd) })) return undefined;
  return row!.pid;
}

/** Kill (SIGKILL), `task delete` reporting 137, `container delete`. */
async function killAndDelete(t: Test, cd: Containerd, id: string): Promise<void> {
  t.ok(await killTask(cd, id), `${id}: STOPPED after SIGKILL`, { tasks: await taskList(cd) });
  const del = await cd.ctr(['task', 'delete', id]);
  expectCode(t, del, 0, `${id}: ctr task delete`);
  t.match(del.stderr, new RegExp(`task ${id} exit with non-zero exit code 137`), `${id}: exit status 137 reported`);
  expectCode(t, await cd.ctr(['container', 'delete', id]), 0, `${id}: ctr container delete`);
}

// ---------------------------------------------------------------------------------------------
// ctr

async function lifecycle(t: Test, { cd, runtime, id }: ScenarioContext): Promise<void> {
  const cid = id('life');
  const pid = await runDetached(t, cd, runtime, cid, ['sleep', '1000']);
  if (pid === undefined) return;
  const shims = cd.shims();
  t.equal(shims.length, 1, 'one shim for the container');
  t.ok(shims.every(s => isShimOf(cd, runtime, s.argv)), `the shim is ${runtime}'s binary of containerd ${cd.version}`, { shims: shims.map(s => s.argv.join(' ')), goShim: cd.dist.goShim });
  t.same(readProcess(pid)?.argv, ['sleep', '1000'], 'the task pid runs the container command');

  const exec = await cd.ctr(['task', 'exec', '--exec-id', 'e1', cid, 'sh', '-c', 'echo out-$((6 * 7)); echo err >&2; exit 3']);
  t.equal(exec.code, 3, 'exec: its exit code 3 is ctr exec\'s', { result: describeResult(exec) });
  t.equal(exec.stdout, 'out-42\n', 'exec: stdout');
  t.equal(exec.stderr, 'err\n', 'exec: stderr kept apart');

  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'keep', cid, 'sleep', '999']), 0, 'exec -d keep');
  const ps = await taskPs(cd, cid);
  const execPid = [...ps].find(([, e]) => e === 'keep')?.[0];
  t.same([...ps.values()].sort(), ['', 'keep'], 'task ps lists the init and the exec keep (with its id)', { ps: [...ps] });
  t.ok(ps.get(pid) === '', 'task ps: the init by its pid');
  t.same(execPid !== undefined ? readProcess(execPid)?.argv : undefined, ['sleep', '999'], 'task ps: the exec pid runs sleep 999');

  await killAndDelete(t, cd, cid);
  t.notOk(readProcess(pid), 'the init is gone (reaped)');
  if (execPid !== undefined) t.notOk(readProcess(execPid), 'the exec is gone with it');
}

const MB = 1_000_000;

async function stdio(t: Test, { cd, runtime, id }: ScenarioContext): Promise<void> {
  // seq 1 600000: 4.4 MB of known text on stdout, a line on stderr after it.
  const n = 600_000;
  let want = '';
  for (let i = 1; i <= n; i++) want += `${i}\n`;
  const r = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('out'), 'sh', '-c', `seq 1 ${n}; echo done >&2`], { timeoutMs: 60_000 });
  t.equal(r.code, 0, 'ctr run --rm seq: exit 0', { command: r.command, stderr: r.stderr.slice(0, 2000) });
  t.equal(r.stdout.length, want.length, `stdout: all ${(want.length / MB).toFixed(1)} MB`);
  t.ok(r.stdout === want, 'stdout: byte for byte what seq wrote', { head: r.stdout.slice(0, 80), tail: r.stdout.slice(-80) });
  t.equal(r.stderr, 'done\n', 'stderr: its own line');

  const input = crypto.randomBytes(1 << 20);
  const { ready, result } = await feedStdin(cd, ['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('stdin'), 'sh', '-c', 'echo ready >&2; exec cat'], input);
  const info = { result: describeStreaming(result) };
  if (!t.ok(ready, 'stdin: the container is ready', info)) return;
  t.equal(result.code, 0, 'stdin: EOF ends cat, exit 0', info);
  t.equal(result.stdout.bytes, input.length, 'stdin: 1 MiB echoed', info);
  t.equal(result.stdout.sha256, sha256Hex(input), 'stdin: byte-exact', info);
}

// Execs launched around the init's SIGKILL; for runcts the exec exits are delayed by the hooks
// (the race: an exec's exit published after the init exited). Both runtimes must publish every
// exec's /tasks/exit before the init's: the Go shim guarantees it since 1.7 (it holds an init
// exit while execs of the container run: runningExecs / execCountSubscribers in its service.go).
const ORDERING_HOOKS = { [HOOK_EXEC_EXIT]: '200', [HOOK_AFTER_RUNC_EXEC]: '30' };

async function ordering(t: Test, ctx: ScenarioContext): Promise<void> {
  const res = await execsWhileInitExits(ctx, { containers: 4, execsPerContainer: 8, concurrency: 2, mode: 'kill' });
  t.comment(`${ctx.runtime} on containerd ${ctx.cd.version}: ${res.report.lifecycles} lifecycles, ${res.report.events} task events, races hit: ${res.report.execExitsPublishedAfterInitExited}, ${res.durationMs} ms`);
  if (ctx.runtime === RUNTIME_RUNCTS) {
    t.ok(res.report.execExitsPublishedAfterInitExited > 0, `the hooks forced the race: exec exits published after the init exited ${res.report.execExitsPublishedAfterInitExited} times`);
  }
  assertOrderingResult(t, res, true);
}

// containerd stops (SIGTERM) and comes back: it reconnects to the shim through the bundle's
// address file (1.x) or bootstrap.json (2.x: {version, address, protocol}).
async function restart(t: Test, { cd, runtime, id }: ScenarioContext): Promise<void> {
  const cid = id('long');
  const pid = await runDetached(t, cd, runtime, cid, ['sleep', '1000']);
  if (pid === undefined) return;
  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'keep', cid, 'sleep', '999']), 0, 'exec -d keep');
  const execPid = [...(await taskPs(cd, cid))].find(([, e]) => e === 'keep')?.[0];
  t.ok(execPid, 'task ps lists the exec');
  const bundle = path.join(cd.taskStateDir(), cid);
  const socket = `unix://${cd.shimSocketPath(cid)}`;
  if (cd.version.startsWith('2.')) {
    const file = path.join(bundle, 'bootstrap.json');
    if (t.ok(fs.existsSync(file), 'the bundle has bootstrap.json (containerd 2.x reconnects through it)')) {
      const b = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: number; address?: string; protocol?: string };
      t.equal(b.address, socket, 'bootstrap.json: the shim socket sha256(address/ns/id) under /run/containerd/s');
      t.equal(b.protocol, 'ttrpc', 'bootstrap.json: protocol ttrpc');
      t.ok(b.version === 2 || b.version === 3, `bootstrap.json: task API version 2 or 3 (${b.version})`);
    }
  } else {
    t.equal(fs.readFileSync(path.join(bundle, 'address'), 'utf8').trim(), socket, 'the bundle address file names the shim socket');
  }
  const shims = cd.shims().map(p => p.pid);

  await cd.stopDaemon('SIGTERM');
  t.notOk(cd.running, 'containerd stopped');
  t.same(cd.shims().map(p => p.pid), shims, 'the shim keeps running without containerd');
  t.ok(isAlive(pid) && execPid !== undefined && isAlive(execPid), 'the container and its exec keep running');
  await cd.restart();

  t.same(await taskRow(cd, cid), { id: cid, pid, status: 'RUNNING' }, 'after the restart: RUNNING, same pid');
  const ps = await taskPs(cd, cid);
  const byPid = (a: [number, string], b: [number, string]): number => a[0] - b[0];
  t.same([...ps].sort(byPid), ([[pid, ''], [execPid ?? 0, 'keep']] as Array<[number, string]>).sort(byPid), 'task ps: the init and the exec, as before');
  const hello = await cd.ctr(['task', 'exec', '--exec-id', 'after', cid, 'echo', 'hello']);
  expectCode(t, hello, 0, 'exec after the restart');
  t.equal(hello.stdout, 'hello\n', 'its output');
  t.same(cd.shims().map(p => p.pid), shims, 'served by the same shim');
  await killAndDelete(t, cd, cid);
}

// runcts only (the Go shim groups by the sandbox annotation alone): ShimGrouping = "namespace"
// through `ctr run --runtime-config-path` makes one daemon serve every container of the namespace.
async function grouping(t: Test, { cd, runtime, id }: ScenarioContext): Promise<void> {
  const config = path.join(cd.dir, 'grouped.toml');
  fs.writeFileSync(config, 'ShimGrouping = "namespace"\n');
  const ids = [id('g'), id('g'), id('g')];
  const runs = await Promise.all(ids.map(cid => cd.ctr(['run', '-d', '--runtime', runtime, '--runtime-config-path', config, BUSYBOX_IMAGE, cid, 'sleep', '1000'])));
  if (!runs.map((r, i) => expectCode(t, r, 0, `ctr run -d ${ids[i]}`)).every(Boolean)) return;
  const daemons = shimDaemons(cd);
  t.equal(daemons.length, 1, 'one runcts daemon for the three containers', { shims: cd.shims().map(p => `${p.pid} ${p.argv.join(' ')}`) });
  for (const cid of ids) {
    const pid = (await taskRow(cd, cid))?.pid ?? 0;
    t.equal(readProcess(pid)?.ppid, daemons[0]?.pid, `${cid}: a child of that daemon`);
    const r = await cd.ctr(['task', 'exec', '--exec-id', 'who', cid, 'sh', '-c', 'echo $HOSTNAME']);
    t.equal(r.code, 0, `${cid}: exec through the shared daemon`, { result: describeResult(r) });
  }
  for (const cid of ids) await killAndDelete(t, cd, cid);
  t.ok(await waitFor(() => shimDaemons(cd).length === 0, { timeoutMs: 10_000 }), 'the daemon exits with its last container');
}

/** Where the 2.3 scenario below has containerd put shim sockets (socket_dir). */
const socketDirOf = (cd: Containerd): string => path.join(cd.dir, 's');  // as extraConfig below

// Runtime options arrive in this containerd's dialect (2.3: inside BootstrapParams, with the
// socket_dir of its config; before: the options Any): ShimCgroup places the daemon, and on 2.3 the
// socket and the address containerd keeps (bootstrap.json) are in socket_dir and nowhere else.
async function startOptions(t: Test, { cd, runtime, id }: ScenarioContext): Promise<void> {
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers')) return void t.fail('written for the cgroup v1 hosts of this project (v2: test/unit/shim-citizenship)');
  const group = `/runcts-matrix-${crypto.randomBytes(4).toString('hex')}`;
  const memory = path.join('/sys/fs/cgroup/memory', group);
  fs.mkdirSync(memory);
  t.teardown(() => fs.rmdirSync(memory));
  const config = path.join(cd.dir, 'shim-cgroup.toml');
  fs.writeFileSync(config, `ShimCgroup = ${JSON.stringify(group)}\n`);
  const cid = id('opts');
  const pid = await runDetached(t, cd, runtime, cid, ['sleep', '1000'], ['--runtime-config-path', config]);
  if (pid === undefined) return;
  const daemon = shimDaemons(cd)[0];
  t.ok(daemon, 'the daemon');
  const memLine = fs.readFileSync(`/proc/${daemon?.pid ?? 0}/cgroup`, 'utf8').split('\n').find(l => /^\d+:memory:/.test(l));
  t.equal(memLine?.split(':')[2], group, 'the daemon is in the ShimCgroup');
  const address = fs.readFileSync(path.join(cd.taskStateDir(), cid, 'address'), 'utf8');
  if (cd.dist.configVersion >= 4) {
    const socket = path.join(socketDirOf(cd), sha256Hex(path.join(cd.address, cd.namespace, cid)));
    t.equal(address, `unix://${socket}`, 'the address names socket_dir');
    t.ok(fs.statSync(socket).isSocket(), 'the socket is there');
    t.notOk(fs.existsSync(cd.shimSocketPath(cid)), 'and not in /run/containerd/s');
    const boot = JSON.parse(fs.readFileSync(path.join(cd.taskStateDir(), cid, 'bootstrap.json'), 'utf8')) as { version?: number; address?: string; protocol?: string };
    t.same(boot, { version: 3, address: `unix://${socket}`, protocol: 'ttrpc' }, 'containerd kept our BootstrapResult');
  } else {
    t.equal(address, `unix://${cd.shimSocketPath(cid)}`, 'the address: /run/containerd/s');
  }
  await killAndDelete(t, cd, cid);
  t.ok(await waitFor(() => shimDaemons(cd).length === 0, { timeoutMs: 10_000 }), 'the daemon exits');
  if (cd.dist.configVersion >= 4) t.same(fs.readdirSync(socketDirOf(cd)), [], 'socket_dir left empty');
}

// containerd 2.x's Introspection.PluginInfo for the runtime plugin runs `<shim> -info` (the CRI
// plugin does so for every handler at start) and answers with the shim's RuntimeInfo.
const SHIM_NAMES: Readonly<Record<string, string>> = {
  // Both name themselves after their runtime type here (the binary name is -v's).
  [RUNTIME_RUNC]: 'io.containerd.runc.v2',
  [RUNTIME_RUNCTS]: 'io.containerd.runcts.v2',
};

async function introspection(t: Test, { cd, runtime }: ScenarioContext): Promise<void> {
  const { response, info } = await runtimeInfo(cd, runtime);
  t.equal(response.plugin?.type, RUNTIME_PLUGIN_TYPE, 'the plugin: type io.containerd.runtime.v2');
  t.equal(response.plugin?.id, RUNTIME_PLUGIN_ID, 'the plugin: id task');
  t.equal(info.name, SHIM_NAMES[runtime], `RuntimeInfo.name ${SHIM_NAMES[runtime]}`);
  t.ok(info.version?.version, `RuntimeInfo.version (${info.version?.version} ${info.version?.revision})`);
  t.equal(info.features?.type_url, OCI_FEATURES_TYPE, 'features: the OCI runtime-spec Features');
  let features: { ociVersionMin?: string; ociVersionMax?: string; hooks?: string[]; mountOptions?: string[]; linux?: { namespaces?: string[] } } = {};
  try {
    features = JSON.parse(info.features?.value.toString('utf8') ?? '') as typeof features;
  } catch (e) {
    t.fail(`features are JSON: ${(e as Error).message}`);
  }
  t.match(features.ociVersionMin ?? '', /^1\.\d+\.\d+/, `features.ociVersionMin (${features.ociVersionMin})`);
  t.match(features.ociVersionMax ?? '', /^1\.\d+\.\d+/, `features.ociVersionMax (${features.ociVersionMax})`);
  t.ok(features.hooks?.includes('prestart'), 'features.hooks');
  t.ok(features.mountOptions?.includes('bind'), 'features.mountOptions');
  t.ok(features.linux?.namespaces?.includes('pid'), 'features.linux.namespaces');
}

// ---------------------------------------------------------------------------------------------

function versionTests(t: Test, version: ContainerdVersion): void {
  const containerd = { version };
  scenario(t, 'ctr run -d, task ls, exec (output, exit code), task ps, kill, delete 137', lifecycle, { containerd });
  scenario(t, 'stdio: 4.4 MB through ctr run --rm byte-exact, 1 MiB of stdin', stdio, { containerd });
  scenario(t, "exit ordering: execs launched while the init is killed exit before it", ordering, { containerd: { version, env: ORDERING_HOOKS }, timeoutMs: 180_000 });
  scenario(t, 'containerd restart: the task RUNNING with the same pid, exec works after', restart, { containerd });
  // A grouped daemon lingers 10 s after its last container by default: 100 ms here.
  scenario(t, 'ShimGrouping = "namespace": one daemon for three containers', grouping, {
    containerd: { version, env: { RUNCTS_SHIM_LINGER_MS: '100' } },
    runtimes: runtimesUnderTest().filter(r => r === RUNTIME_RUNCTS),
  });
  scenario(t, 'runtime options in this dialect: ShimCgroup; on 2.3 socket_dir', startOptions, {
    containerd: { version, extraConfig: (dist, dir) => (dist.configVersion >= 4 ? `[plugins."io.containerd.shim.v1.manager"]\n  socket_dir = ${JSON.stringify(path.join(dir, 's'))}\n` : '') },
    runtimes: runtimesUnderTest().filter(r => r === RUNTIME_RUNCTS),
  });
  if (version.startsWith('2.')) scenario(t, 'Introspection.PluginInfo: the runtime plugin answers with the shim -info', introspection, { containerd, image: false });

  criScenario(
    t,
    'CRI pod: RunPodSandbox, two containers on the pod shim, ExecSync, status, StopPodSandbox, RemovePodSandbox',
    async (t, { env, cri, handler, runPod }) => {
      const pod = await runPod('matrix');
      const shims = shimsOf(env);
      t.equal(shims.length, 1, 'one shim after RunPodSandbox');
      t.ok(shims.every(s => isShimOfHandler(handler, s.argv) && (handler.name !== 'runc' || s.argv[0] === env.cd.dist.goShim)), `the shim is ${handler.shimBinary} of containerd ${version}`, { shims: shims.map(s => s.argv.join(' ')) });
      const app = await pod.run('app', { command: ['sh', '-c', 'echo started; exec sleep 1000'] });
      const side = await pod.run('side', { command: ['sleep', '1001'] });
      for (const c of [app, side]) {
        const { status } = await cri.containerStatus(c);
        t.equal(status.state, 'CONTAINER_RUNNING', `${status.metadata.name}: ContainerStatus RUNNING`);
        const pid = await containerPid(cri, c);
        t.equal(readProcess(pid)?.ppid, shims[0]?.pid, `${status.metadata.name}: a child of the pod's one shim`);
      }
      t.same(shimsOf(env).map(s => s.pid), shims.map(s => s.pid), "still one shim: the pod's containers share it");
      const ex = await cri.execSync(app, ['sh', '-c', 'echo hi; echo oops >&2; exit 3'], 10);
      t.equal(ex.exit_code, 3, 'ExecSync: exit code 3');
      t.equal(ex.stdout.toString(), 'hi\n', 'ExecSync: stdout');
      t.equal(ex.stderr.toString(), 'oops\n', 'ExecSync: stderr');
      t.ok(await waitFor(() => fs.existsSync(pod.logPath('app')) && fs.readFileSync(pod.logPath('app'), 'utf8').includes(' stdout F started'), { timeoutMs: 10_000 }), 'the container log has its output');
      await cri.stopPodSandbox(pod.id);
      t.equal((await cri.containerStatus(app)).status.state, 'CONTAINER_EXITED', 'StopPodSandbox stopped the containers');
      await cri.removePodSandbox(pod.id);
      t.same(await cri.listPodSandbox(), [], 'RemovePodSandbox: no pod left');
      t.same(await cri.listContainers(), [], 'and no container');
      t.ok(await waitFor(() => shimsOf(env).length === 0, { timeoutMs: 10_000 }), 'the pod shim exits');
    },
    { containerd: { version } },
  );
}

const versions = containerdVersionsUnderTest();
if (!versions.length) void t.test('containerd versions', { skip: `RUNCTS_TEST_CONTAINERD=${process.env.RUNCTS_TEST_CONTAINERD} names none of the matrix's` }, async () => undefined);
for (const version of versions) {
  const why = containerdUnavailable(version);
  if (why) void t.test(`containerd ${version}`, { skip: why }, async () => undefined);
  else void t.test(`containerd ${version}`, async t => versionTests(t, version));
}
