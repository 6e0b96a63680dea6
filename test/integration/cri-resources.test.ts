// Issue "Kubernetes pods on runcts through containerd's CRI": resources. ContainerStats and
// ListContainerStats (the shim's Stats, read from the container's cgroup), UpdateContainerResources
// (the shim's Update → `runc update`, checked in the cgroup v1 files), and an OOM kill reported as
// reason OOMKilled (the shim's /tasks/oom event). Every scenario runs for the `runc` handler
// (containerd's Go shim) first, then for `runcts`.
import * as fs from 'node:fs';
import t from 'tap';
import {
  cgroupDirOf,
  containerPid,
  ContainerStats,
  criScenario,
  execText,
  isAlive,
  logicalLines,
  parseCriLog,
  readCgroupFile,
  waitContainerState,
  waitFor,
} from './harness';

const MiB = 1024 * 1024;

function cpuNs(s: ContainerStats | undefined): number {
  return s?.cpu?.usage_core_nano_seconds?.value ?? -1;
}

function workingSet(s: ContainerStats | undefined): number {
  return s?.memory?.working_set_bytes?.value ?? -1;
}

criScenario(t, 'ContainerStats and ListContainerStats: cpu usage grows with work, working set grows with allocation', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('stats');
  // Allocates 64 MiB (a shell variable) when /tmp/alloc appears, then holds it.
  const hogScript = 'while [ ! -e /tmp/alloc ]; do sleep 0.05; done; a=$(yes | head -c 67108864); touch /tmp/allocated; while :; do sleep 3600; done';
  const hog = await pod.run('hog', { command: ['sh', '-c', hogScript] });
  const idle = await pod.run('idle', { command: ['sleep', '3600'] });

  const s0 = await cri.containerStats(hog);
  t.equal(s0.attributes?.id, hog, 'attributes.id');
  t.equal(s0.attributes?.metadata?.name, 'hog', 'attributes.metadata.name');
  t.ok((s0.cpu?.timestamp ?? 0) > 0, 'cpu.timestamp set');
  t.ok(s0.cpu?.usage_core_nano_seconds !== null && cpuNs(s0) >= 0, 'cpu.usage_core_nano_seconds present', { cpu: s0.cpu });
  t.ok((s0.memory?.timestamp ?? 0) > 0, 'memory.timestamp set');
  t.ok(workingSet(s0) > 0, 'memory.working_set_bytes present and > 0', { memory: s0.memory });
  t.ok(workingSet(s0) < 32 * MiB, 'a small working set before the allocation', { ws: workingSet(s0) });

  // Burn one core for 2 s inside the container (an exec runs in the container's cgroup).
  const t0 = process.hrtime.bigint();
  await execText(cri, hog, ['sh', '-c', 'timeout 2 sh -c "while :; do :; done"; true']);
  const burnMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const s1 = await cri.containerStats(hog);
  const cpuGrowth = cpuNs(s1) - cpuNs(s0);
  t.ok(burnMs >= 1_900, 'the burner ran for its 2 s', { burnMs });
  t.ok(cpuGrowth >= 1_000_000_000, 'cpu usage grew by at least 1 s of cpu time (2 s of a busy loop, on a busy machine)', { cpuGrowthMs: cpuGrowth / 1e6, burnMs });
  t.ok(cpuGrowth <= (burnMs + 1_000) * 1e6 * 2, 'and not by more than the wall time allowed (2 cores)', { cpuGrowthMs: cpuGrowth / 1e6, burnMs });
  t.ok((s1.cpu?.timestamp ?? 0) > (s0.cpu?.timestamp ?? 0), 'cpu.timestamp advanced');

  await execText(cri, hog, ['touch', '/tmp/alloc']);
  const allocated = await waitFor(async () => (await cri.execSync(hog, ['test', '-e', '/tmp/allocated'])).exit_code === 0, { timeoutMs: 30_000, intervalMs: 100 });
  t.ok(allocated, 'the container allocated its 64 MiB');
  const s2 = await cri.containerStats(hog);
  const wsGrowth = workingSet(s2) - workingSet(s1);
  t.ok(wsGrowth >= 56 * MiB, 'working_set_bytes grew by the allocation (>= 56 of 64 MiB)', { ws1: workingSet(s1), ws2: workingSet(s2), growthMiB: wsGrowth / MiB });
  t.ok((s2.memory?.usage_bytes?.value ?? 0) >= workingSet(s2), 'usage_bytes >= working_set_bytes', { memory: s2.memory });

  const all = await cri.listContainerStats();
  t.same(all.map(s => s.attributes?.id).sort(), [hog, idle].sort(), 'ListContainerStats: both containers (not the sandbox)');
  const byPod = await cri.listContainerStats({ pod_sandbox_id: pod.id });
  t.same(byPod.map(s => s.attributes?.metadata?.name).sort(), ['hog', 'idle'], 'ListContainerStats(pod): both');
  const one = await cri.listContainerStats({ id: hog });
  t.equal(one.length, 1, 'ListContainerStats(id): one entry');
  t.ok(workingSet(one[0]) >= workingSet(s1) + 56 * MiB, 'ListContainerStats(id): the grown working set too', { ws: workingSet(one[0]) });
  t.ok(cpuNs(one[0]) >= cpuNs(s1), 'ListContainerStats(id): cpu usage not below the last reading');
  const idleStats = all.find(s => s.attributes?.id === idle);
  t.ok(workingSet(idleStats) > 0 && workingSet(idleStats) < 32 * MiB, 'the idle container: a small working set of its own', { ws: workingSet(idleStats) });
});

criScenario(t, 'UpdateContainerResources: cpu quota/period, cpu shares, memory limit in the cgroup v1 files', async (t, ctx) => {
  const { cri, env } = ctx;
  const pod = await ctx.runPod('update');
  const c = await pod.run('c', {
    command: ['sleep', '3600'],
    resources: { cpu_period: 100000, cpu_quota: 50000, cpu_shares: 512, memory_limit_in_bytes: 256 * MiB },
  });
  const pid = await containerPid(cri, c);
  const cpu = cgroupDirOf(pid, 'cpu');
  const mem = cgroupDirOf(pid, 'memory');
  t.ok(cpu.endsWith(`${env.cgroupParent}/${c}`), 'cpu cgroup: <cgroup_parent>/<container id>', { cpu });
  t.ok(mem.endsWith(`${env.cgroupParent}/${c}`), 'memory cgroup: <cgroup_parent>/<container id>', { mem });
  const read = (): Record<string, string> => ({
    period: readCgroupFile(cpu, 'cpu.cfs_period_us'),
    quota: readCgroupFile(cpu, 'cpu.cfs_quota_us'),
    shares: readCgroupFile(cpu, 'cpu.shares'),
    memory: readCgroupFile(mem, 'memory.limit_in_bytes'),
  });
  t.same(read(), { period: '100000', quota: '50000', shares: '512', memory: String(256 * MiB) }, 'the initial resources are in the cgroup');

  await cri.updateContainerResources(c, { cpu_period: 50000, cpu_quota: 20000, cpu_shares: 256, memory_limit_in_bytes: 128 * MiB });
  t.same(read(), { period: '50000', quota: '20000', shares: '256', memory: String(128 * MiB) }, 'after the update: period 50000, quota 20000, shares 256, memory 128 MiB');
  if (fs.existsSync(`${mem}/memory.memsw.limit_in_bytes`)) {
    t.equal(readCgroupFile(mem, 'memory.memsw.limit_in_bytes'), String(128 * MiB), 'memory+swap limit follows (the CRI sets swap = memory)');
  }
  let st = await cri.containerStatus(c);
  t.match(
    st.status as unknown as Record<string, unknown>,
    { resources: { linux: { cpu_period: 50000, cpu_quota: 20000, cpu_shares: 256, memory_limit_in_bytes: 128 * MiB } } },
    'ContainerStatus.resources shows the new values',
  );

  // Raising the memory limit again (memory+swap must be raised first on cgroup v1).
  await cri.updateContainerResources(c, { cpu_period: 100000, cpu_quota: 200000, cpu_shares: 1024, memory_limit_in_bytes: 512 * MiB });
  t.same(read(), { period: '100000', quota: '200000', shares: '1024', memory: String(512 * MiB) }, 'second update: period 100000, quota 200000, shares 1024, memory 512 MiB');

  st = await cri.containerStatus(c);
  t.equal(st.status.state, 'CONTAINER_RUNNING', 'the container kept running');
  t.ok(isAlive(pid) && (await containerPid(cri, c)) === pid, 'same process');
  // The limit is enforced: a single process allocating past a small limit is OOM-killed, not the
  // container. (One process only: with a pipeline, a sibling can trigger a second OOM kill before
  // the first victim's memory is freed, and that one may pick the container's init.)
  await cri.updateContainerResources(c, { cpu_period: 100000, cpu_quota: 200000, cpu_shares: 1024, memory_limit_in_bytes: 24 * MiB });
  t.equal(readCgroupFile(mem, 'memory.limit_in_bytes'), String(24 * MiB), 'lowered to 24 MiB');
  const r = await cri.execSync(c, ['awk', 'BEGIN { s = "x"; while (length(s) < 100000000) s = s s; print "survived" }']);
  t.equal(r.exit_code, 137, 'an exec allocating 100 MB under the 24 MiB limit is OOM-killed (137)', { stdout: r.stdout.toString(), stderr: r.stderr.toString() });
  t.ok(isAlive(pid), 'the container process survived (it is tiny)');
});

criScenario(t, 'OOM: a container over its memory limit is EXITED, reason OOMKilled, exit code 137', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('oom');
  const c = await pod.run('oom', {
    command: ['sh', '-c', 'echo start; a=$(yes | head -c 268435456); echo survived'],
    resources: { memory_limit_in_bytes: 32 * MiB },
  });
  const st = await waitContainerState(cri, c, 'CONTAINER_EXITED', 60_000);
  t.equal(st.state, 'CONTAINER_EXITED', 'EXITED');
  t.equal(st.exit_code, 137, 'exit code 137 (SIGKILL by the OOM killer)');
  t.equal(st.reason, 'OOMKilled', 'reason OOMKilled');
  t.ok(st.finished_at > st.started_at, 'finished_at after started_at');
  const lines = logicalLines(parseCriLog(fs.readFileSync(pod.logPath('oom'), 'utf8')), 'stdout');
  t.same(lines, ['start'], 'it started and did not survive the allocation');

  // A sibling that stays under its limit is unaffected.
  const ok = await pod.run('fine', { command: ['sh', '-c', 'a=$(yes | head -c 1000000); echo ${#a}'], resources: { memory_limit_in_bytes: 32 * MiB } });
  const st2 = await waitContainerState(cri, ok, 'CONTAINER_EXITED', 30_000);
  t.same([st2.exit_code, st2.reason], [0, 'Completed'], 'a container within its limit: exit 0, reason Completed');
});
