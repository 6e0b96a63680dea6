// Issue "Kubernetes pods on runcts through containerd's CRI": pods driven the way the kubelet
// drives them (RunPodSandbox, CreateContainer/StartContainer, StopContainer, StopPodSandbox,
// RemovePodSandbox), host and CNI bridge networks, pid namespaces, container logs. Every scenario
// runs for the `runc` handler (containerd's Go shim) first, then for `runcts`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import {
  allocatedIps,
  BUSYBOX_IMAGE,
  bridgePorts,
  cgroupsUnder,
  ContainerStatus,
  containerPid,
  criScenario,
  CriScenarioContext,
  isAlive,
  isShimOfHandler,
  logicalLines,
  mountsUnder,
  PAUSE_ENTRYPOINT,
  parseCriLog,
  Pod,
  readProcess,
  RUNC_STATE_ROOT,
  sandboxPid,
  shimsOf,
  waitContainerState,
  waitFor,
} from './harness';

function nsLink(pid: number | 'self', ns: string): string {
  return fs.readlinkSync(`/proc/${pid}/ns/${ns}`);
}

/** The container's cgroup in the memory hierarchy, from /proc/<pid>/cgroup. */
function memoryCgroupOf(pid: number): string | undefined {
  const line = fs
    .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find(l => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  return line?.split(':').slice(2).join(':');
}

/** What must hold for a freshly started container: status, pid, its parent, its cgroup. */
async function checkRunning(t: Test, ctx: CriScenarioContext, pod: Pod, id: string, name: string, argv: string[], shimPid: number): Promise<number> {
  const { status } = await ctx.cri.containerStatus(id);
  t.equal(status.state, 'CONTAINER_RUNNING', `${name}: ContainerStatus state RUNNING`);
  t.equal(status.metadata.name, name, `${name}: metadata name`);
  t.equal(status.image?.image, BUSYBOX_IMAGE, `${name}: image`);
  t.ok(status.created_at > 0, `${name}: created_at set`);
  t.ok(status.started_at >= status.created_at, `${name}: started_at >= created_at`, { created: status.created_at, started: status.started_at });
  t.ok(Math.abs(status.started_at / 1e6 - Date.now()) < 60_000, `${name}: started_at is now-ish`, { started: status.started_at });
  t.equal(status.finished_at, 0, `${name}: not finished`);
  t.equal(status.log_path, pod.logPath(name), `${name}: log_path = log_directory/log_path`);
  const pid = await containerPid(ctx.cri, id);
  t.ok(pid > 0 && isAlive(pid), `${name}: verbose info carries the live pid`, { pid });
  const proc = readProcess(pid);
  t.same(proc?.argv, argv, `${name}: the pid runs the container command`);
  t.equal(proc?.ppid, shimPid, `${name}: its parent is the pod's shim (the subreaper)`);
  t.equal(memoryCgroupOf(pid), `${ctx.env.cgroupParent}/${id}`, `${name}: cgroup <cgroup_parent>/<container id>`);
  return pid;
}

criScenario(t, 'three containers in one pod share one shim; stop with grace period, exit codes, removal', async (t, ctx) => {
  const { env, cri, handler } = ctx;
  const pod = await ctx.runPod('life');

  const afterSandbox = shimsOf(env);
  t.equal(afterSandbox.length, 1, 'one shim after RunPodSandbox', { shims: afterSandbox.map(s => s.argv.join(' ')) });
  const shim = afterSandbox[0]!;
  t.ok(isShimOfHandler(handler, shim.argv), `the shim is ${handler.shimBinary}`, { argv: shim.argv });
  t.equal(shim.id, pod.id, 'the shim was started for the sandbox (-id <sandbox id>)');

  const pausePid = await sandboxPid(cri, pod.id);
  t.same(readProcess(pausePid)?.argv, PAUSE_ENTRYPOINT, 'the sandbox runs the pause image entrypoint');
  t.equal(readProcess(pausePid)?.ppid, shim.pid, 'the pause process is a child of the shim');

  const termCmd = ['sh', '-c', 'trap "exit 42" TERM; echo started; while :; do sleep 1 & wait $!; done'];
  const term = await pod.run('term42', { command: termCmd });
  // pid 1 of its pid namespace without a handler: SIGTERM does nothing, the grace period expires.
  const stubborn = await pod.run('stubborn', { command: ['sleep', '3600'] });
  const third = await pod.run('third', { command: ['sleep', '3601'] });

  const shims = shimsOf(env);
  t.same(
    shims.map(s => s.pid),
    [shim.pid],
    'still exactly one shim process for the pod (sandbox and three containers)',
    { shims: shims.map(s => s.argv.join(' ')) },
  );

  const termPid = await checkRunning(t, ctx, pod, term, 'term42', termCmd, shim.pid);
  const stubbornPid = await checkRunning(t, ctx, pod, stubborn, 'stubborn', ['sleep', '3600'], shim.pid);
  const thirdPid = await checkRunning(t, ctx, pod, third, 'third', ['sleep', '3601'], shim.pid);
  t.equal(new Set([pausePid, termPid, stubbornPid, thirdPid]).size, 4, 'four distinct processes');

  const listed = await cri.listContainers({ pod_sandbox_id: pod.id });
  t.same(
    listed.map(c => [c.metadata.name, c.state, c.pod_sandbox_id]).sort(),
    [
      ['stubborn', 'CONTAINER_RUNNING', pod.id],
      ['term42', 'CONTAINER_RUNNING', pod.id],
      ['third', 'CONTAINER_RUNNING', pod.id],
    ],
    'ListContainers(pod): the three containers, RUNNING',
  );
  t.same((await cri.listContainers({ state: { state: 'CONTAINER_RUNNING' } })).map(c => c.id).sort(), [term, stubborn, third].sort(), 'ListContainers(state RUNNING)');

  const ps = await cri.podSandboxStatus(pod.id, true);
  t.equal(ps.status.id, pod.id, 'PodSandboxStatus id');
  t.equal(ps.status.state, 'SANDBOX_READY', 'PodSandboxStatus READY');
  t.same(ps.status.metadata, pod.config.metadata, 'PodSandboxStatus metadata as configured');
  t.equal(ps.status.runtime_handler, handler.name, 'PodSandboxStatus runtime_handler');
  t.ok(ps.status.created_at > 0, 'PodSandboxStatus created_at set');
  t.ok(ps.status.network?.ip.startsWith(env.net.prefix), `pod ip in ${env.net.subnet}`, { network: ps.status.network });
  const info = JSON.parse(ps.info.info ?? '{}') as { runtimeType?: string; pid?: number; processStatus?: string };
  t.equal(info.runtimeType, handler.runtimeType, 'verbose info: runtimeType');
  t.equal(info.processStatus, 'running', 'verbose info: processStatus running');
  t.same((await cri.listPodSandbox()).map(p => [p.id, p.state]), [[pod.id, 'SANDBOX_READY']], 'ListPodSandbox: the pod, READY');

  // StopContainer with a grace period the container honours: its own exit code.
  let t0 = Date.now();
  await cri.stopContainer(term, 10);
  const termTook = Date.now() - t0;
  t.ok(termTook < 8_000, 'the SIGTERM handler ended it well within the grace period', { ms: termTook });
  let st: ContainerStatus = (await cri.containerStatus(term)).status;
  t.equal(st.state, 'CONTAINER_EXITED', 'term42: EXITED');
  t.equal(st.exit_code, 42, 'term42: exit code 42 (its TERM trap)');
  t.equal(st.reason, 'Error', 'term42: reason Error (non-zero exit)');
  t.ok(st.finished_at >= st.started_at, 'term42: finished_at >= started_at');
  t.notOk(isAlive(termPid), 'term42: process gone');

  // StopContainer where the grace period expires: SIGKILL, 137.
  t0 = Date.now();
  await cri.stopContainer(stubborn, 2);
  const stubbornTook = Date.now() - t0;
  t.ok(stubbornTook >= 1_900, 'the grace period (2 s) was waited out', { ms: stubbornTook });
  t.ok(stubbornTook < 15_000, 'then it was killed', { ms: stubbornTook });
  st = (await cri.containerStatus(stubborn)).status;
  t.equal(st.state, 'CONTAINER_EXITED', 'stubborn: EXITED');
  t.equal(st.exit_code, 137, 'stubborn: exit code 137 (SIGKILL)');
  t.notOk(isAlive(stubbornPid), 'stubborn: process gone');

  t.same(shimsOf(env).map(s => s.pid), [shim.pid], 'the shim stays while the sandbox runs');
  t.ok(isAlive(thirdPid), 'third: still running');

  // StopPodSandbox forcibly terminates what is left.
  await cri.stopPodSandbox(pod.id);
  st = (await cri.containerStatus(third)).status;
  t.equal(st.state, 'CONTAINER_EXITED', 'third: EXITED after StopPodSandbox');
  t.equal(st.exit_code, 137, 'third: exit code 137');
  t.notOk(isAlive(thirdPid), 'third: process gone');
  t.notOk(isAlive(pausePid), 'pause: process gone');
  t.equal((await cri.podSandboxStatus(pod.id)).status.state, 'SANDBOX_NOTREADY', 'sandbox NOTREADY');
  t.same(allocatedIps(env.net), [], 'the pod address was released (CNI DEL)');

  await cri.removePodSandbox(pod.id);
  t.same(await cri.listPodSandbox(), [], 'ListPodSandbox: empty');
  t.same(await cri.listContainers(), [], 'ListContainers: empty (containers removed with the pod)');
  const gone = await waitFor(() => shimsOf(env).length === 0, { timeoutMs: 10_000 });
  t.ok(gone, 'no shim process left', { shims: shimsOf(env).map(s => s.argv.join(' ')) });
  t.notOk(fs.existsSync(env.cd.shimSocketPath(pod.id)), 'the shim socket is gone');
  t.same(mountsUnder(env.cd.dir), [], 'no mounts left (rootfs, shm, netns)');
  t.same(cgroupsUnder(env.cgroupParent), [], 'no cgroups left under the cgroup parent');
  let runcState: string[] = [];
  try {
    runcState = fs.readdirSync(path.join(RUNC_STATE_ROOT, ctx.cd.namespace));
  } catch {
    // no directory: nothing left
  }
  t.same(runcState, [], 'no runc state left');
  t.same(bridgePorts(env.net), [], 'no veth left on the bridge');
  t.ok(fs.existsSync(pod.logPath('term42')), 'the container logs stay (the kubelet owns them)');
});

criScenario(t, 'host network pod (network NODE)', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('hostnet', { network: 'NODE' });
  const c = await pod.run('c', { command: ['sleep', '3600'] });
  const pid = await containerPid(cri, c);
  t.equal(nsLink(pid, 'net'), nsLink('self', 'net'), "the container is in the host's network namespace");
  t.equal(nsLink(await sandboxPid(cri, pod.id), 'net'), nsLink('self', 'net'), 'so is the sandbox');
  t.not(nsLink(pid, 'pid'), nsLink('self', 'pid'), 'but in its own pid namespace');

  const hostAddrs = Object.values(os.networkInterfaces())
    .flat()
    .filter(a => a && a.family === 'IPv4' && !a.internal)
    .map(a => a!.address);
  const out = (await cri.execSync(c, ['ip', '-o', '-4', 'addr'])).stdout.toString();
  t.ok(hostAddrs.length > 0 && hostAddrs.every(a => out.includes(`inet ${a}/`)), "`ip addr` in the container shows the host's addresses", { hostAddrs, out });

  const ps = await cri.podSandboxStatus(pod.id);
  t.equal(ps.status.state, 'SANDBOX_READY', 'sandbox READY');
  t.equal(ps.status.linux?.namespaces?.options?.network, 'NODE', 'PodSandboxStatus: network NODE');
  t.equal(ps.status.network?.ip ?? '', '', 'no pod IP (the CRI does not report one for host network)');
  t.same(allocatedIps(ctx.env.net), [], 'no CNI address allocated');
  t.same(bridgePorts(ctx.env.net), [], 'nothing attached to the CNI bridge');
});

criScenario(t, 'CNI bridge network: pod IP in the subnet, eth0 has it, shared by the pod, released at stop', async (t, ctx) => {
  const { cri, env } = ctx;
  const pod = await ctx.runPod('cni');
  const ps = await cri.podSandboxStatus(pod.id);
  const ip = ps.status.network?.ip ?? '';
  t.match(ip, new RegExp(`^${env.net.prefix.replace(/\./g, '\\.')}(\\d+)$`), `PodSandboxStatus.network.ip in ${env.net.subnet}`);
  const host = Number(ip.split('.')[3]);
  t.ok(host >= 2 && host <= 254, 'a host address of the /24 (not the network, gateway or broadcast address)', { ip });
  t.same(allocatedIps(env.net), [ip], 'host-local allocated exactly that address');
  t.equal(bridgePorts(env.net).length, 1, `one veth on bridge ${env.net.bridge}`);

  const a = await pod.run('a', { command: ['sleep', '3600'] });
  const b = await pod.run('b', { command: ['sleep', '3601'] });
  for (const [name, id] of [['a', a], ['b', b]] as const) {
    const eth0 = (await cri.execSync(id, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout.toString();
    t.match(eth0, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/24 `), `${name}: eth0 has the pod IP`);
    const lo = (await cri.execSync(id, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'lo'])).stdout.toString();
    t.match(lo, /inet 127\.0\.0\.1\/8 /, `${name}: lo is up with 127.0.0.1 (loopback plugin)`);
  }
  const pidA = await containerPid(cri, a);
  const pidB = await containerPid(cri, b);
  t.equal(nsLink(pidA, 'net'), nsLink(await sandboxPid(cri, pod.id), 'net'), "a is in the sandbox's network namespace");
  t.equal(nsLink(pidA, 'net'), nsLink(pidB, 'net'), 'so is b');
  t.not(nsLink(pidA, 'net'), nsLink('self', 'net'), "which is not the host's");

  await cri.stopPodSandbox(pod.id);
  t.same(allocatedIps(env.net), [], 'StopPodSandbox released the address');
  t.same(bridgePorts(env.net), [], 'and removed the veth');
  await cri.removePodSandbox(pod.id);
});

criScenario(t, 'pid namespaces: pod-level (sees the pause process) and container-level (own pid 1)', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('pidns', { pid: 'POD' });
  const shared = await pod.run('shared', { command: ['sleep', '3600'], pid: 'POD' });
  const own = await pod.run('own', { command: ['sleep', '3601'], pid: 'CONTAINER' });
  const pausePid = await sandboxPid(cri, pod.id);

  const cmdline1 = async (id: string): Promise<string[]> => (await cri.execSync(id, ['cat', '/proc/1/cmdline'])).stdout.toString().replace(/\0$/, '').split('\0');
  t.same(await cmdline1(shared), PAUSE_ENTRYPOINT, 'pid POD: pid 1 is the pause process');
  const psShared = (await cri.execSync(shared, ['ps', '-o', 'pid,args'])).stdout.toString();
  t.match(psShared, /sleep 3600/, 'pid POD: ps shows the container itself');
  t.match(psShared, /while :; do sleep 3600/, 'pid POD: ps shows the pause process');
  t.notMatch(psShared, /sleep 3601/, "pid POD: not the other container's process");
  t.equal(nsLink(await containerPid(cri, shared), 'pid'), nsLink(pausePid, 'pid'), "pid POD: the sandbox's pid namespace");

  t.same(await cmdline1(own), ['sleep', '3601'], "pid CONTAINER: pid 1 is the container's own process");
  const psOwn = (await cri.execSync(own, ['ps', '-o', 'pid,args'])).stdout.toString();
  t.notMatch(psOwn, /while :; do sleep/, 'pid CONTAINER: the pause process is not visible');
  t.notMatch(psOwn, /sleep 3600/, "pid CONTAINER: nor the other container's");
  const pids = psOwn
    .split('\n')
    .slice(1)
    .map(l => Number(l.trim().split(/\s+/)[0]))
    .filter(n => n > 0);
  t.ok(pids.includes(1) && pids.length <= 3, 'pid CONTAINER: only pid 1 and the exec itself', { psOwn });
  t.not(nsLink(await containerPid(cri, own), 'pid'), nsLink(pausePid, 'pid'), 'pid CONTAINER: a pid namespace of its own');
  t.not(nsLink(pausePid, 'pid'), nsLink('self', 'pid'), "the pod's pid namespace is not the host's");
});

criScenario(t, 'container logs in the CRI format: both streams in order, long lines split, partial last line', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('logs');
  const script = [
    'i=1',
    'while [ $i -le 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done',
    // 40000 characters on one line: more than max_container_log_line_size (16384).
    'head -c 40000 /dev/zero | tr "\\0" x; echo',
    'printf "tail-without-newline"',
  ].join('; ');
  const c = await pod.run('writer', { command: ['sh', '-c', script] });
  const st = await waitContainerState(cri, c, 'CONTAINER_EXITED');
  t.equal(st.state, 'CONTAINER_EXITED', 'the writer exited');
  t.equal(st.exit_code, 0, 'exit code 0');
  t.equal(st.reason, 'Completed', 'reason Completed');

  const text = fs.readFileSync(pod.logPath('writer'), 'utf8');
  let lines: ReturnType<typeof parseCriLog> = [];
  t.doesNotThrow(() => (lines = parseCriLog(text)), 'every line is `<RFC3339Nano> <stdout|stderr> <F|P> <text>`');
  if (!lines.length) return;
  // Go's RFC3339Nano: up to 9 fractional digits, trailing zeros dropped; containerd writes UTC.
  t.ok(
    lines.every(l => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$/.test(l.time)),
    'timestamps are RFC3339Nano in UTC',
    { bad: lines.find(l => !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$/.test(l.time))?.time },
  );
  const now = BigInt(Date.now()) * 1_000_000n;
  t.ok(lines.every(l => l.timeNs <= now && now - l.timeNs < 120_000_000_000n), 'timestamps are from this run');
  for (const stream of ['stdout', 'stderr'] as const) {
    const ts = lines.filter(l => l.stream === stream).map(l => l.timeNs);
    t.ok(
      ts.every((v, i) => i === 0 || v >= ts[i - 1]!),
      `${stream}: timestamps never go backwards`,
    );
  }
  const expectOut = [...Array.from({ length: 200 }, (_, i) => `out ${i + 1}`), 'x'.repeat(40000), 'tail-without-newline'];
  const expectErr = Array.from({ length: 200 }, (_, i) => `err ${i + 1}`);
  const out = logicalLines(lines, 'stdout');
  const err = logicalLines(lines, 'stderr');
  t.equal(out.length, expectOut.length, 'stdout: 202 logical lines');
  t.ok(
    out.every((l, i) => l === expectOut[i]),
    'stdout: every line, in order',
    { firstDiff: out.findIndex((l, i) => l !== expectOut[i]) },
  );
  t.same(err, expectErr, 'stderr: every line, in order');
  const long = lines.filter(l => l.stream === 'stdout' && /^x+$/.test(l.text));
  t.same(
    long.map(l => [l.tag, l.text.length]),
    [
      ['P', 16384],
      ['P', 16384],
      ['F', 40000 - 2 * 16384],
    ],
    'the 40000-character line: two 16 KiB partial (P) records, then the full (F) rest',
  );
  const last = lines.filter(l => l.stream === 'stdout').pop();
  t.same([last?.tag, last?.text], ['P', 'tail-without-newline'], 'output without a final newline ends in a P record');
  t.ok(
    lines.filter(l => l.stream === 'stderr').every(l => l.tag === 'F'),
    'stderr lines are all full (F) records',
  );
});

// The runtime handler with runtime options, configured the way containerd 1.6 needs it (see
// README.md): containerd's CRI plugin decodes a handler's `options` table as
// containerd.runc.v1.Options only for runtime_type io.containerd.runc.v2; for any other runtime
// type (io.containerd.runcts.v2) it sends runtimeoptions.v1.Options, and containerd 1.6 fills in
// only its ConfigPath (other keys of the table are dropped), so runcts' options live in a TOML
// file named by ConfigPath. Either way the option must take effect: BinaryName names a wrapper
// that records every runc call.
const wrapperDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-cri-wrap-'));
process.once('exit', () => fs.rmSync(wrapperDir, { recursive: true, force: true }));
function wrapperFor(handler: string): { binary: string; calls: string } {
  const binary = path.join(wrapperDir, `runc-${handler}`);
  const calls = path.join(wrapperDir, `runc-${handler}.calls`);
  fs.writeFileSync(binary, `#!/bin/sh\necho "$*" >> ${calls}\nexec runc "$@"\n`, { mode: 0o755 });
  return { binary, calls };
}
const runctsOptionsFile = path.join(wrapperDir, 'runcts.toml');
fs.writeFileSync(runctsOptionsFile, `BinaryName = ${JSON.stringify(wrapperFor('runcts').binary)}\n`);
const handlerOptions = [
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
  `  BinaryName = ${JSON.stringify(wrapperFor('runc').binary)}`,
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runcts.options]',
  `  ConfigPath = ${JSON.stringify(runctsOptionsFile)}`,
  '',
].join('\n');

criScenario(
  t,
  'handler runtime options (runc: BinaryName in the options table; runcts: BinaryName in the ConfigPath file): the named runc binary is used',
  async (t, ctx) => {
    const { cri, handler } = ctx;
    const { binary, calls } = wrapperFor(handler.name);
    fs.rmSync(calls, { force: true });
    let pod: Pod;
    try {
      pod = await ctx.runPod('options');
    } catch (e) {
      t.fail(`RunPodSandbox with the handler's runtime options: ${(e as Error).message}`);
      return;
    }
    t.pass("RunPodSandbox with the handler's runtime options");
    const c = await pod.run('c', { command: ['sleep', '3600'] });
    t.equal((await cri.containerStatus(c)).status.state, 'CONTAINER_RUNNING', 'the container runs');
    const info = JSON.parse((await cri.containerStatus(c, true)).info.info ?? '{}') as { runtimeOptions?: Record<string, unknown> };
    if (handler.name === 'runc') t.same(info.runtimeOptions, { binary_name: binary }, 'containerd passed containerd.runc.v1.Options {BinaryName}');
    else t.same(info.runtimeOptions, { config_path: runctsOptionsFile }, 'containerd passed runtimeoptions.v1.Options {ConfigPath}');
    const recorded = fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').split('\n').filter(Boolean) : [];
    t.ok(recorded.some(l => / create /.test(` ${l} `) && l.includes(pod.id)), 'the wrapper ran `runc create` for the sandbox', { recorded });
    t.ok(recorded.some(l => / create /.test(` ${l} `) && l.includes(c)), 'and for the container', { recorded });
  },
  { containerd: { extraConfig: `\n${handlerOptions}` } },
);
