// The rest of the Task API as containerd's users reach it: pause/resume, update, stats
// (metrics), pids, OOM events and checkpoint, through ctr and, where ctr 1.6 has no command
// (`ctr task update` does not exist), through containerd's own gRPC API.
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  BUSYBOX_IMAGE,
  CGROUP_ROOT,
  Containerd,
  EventStream,
  expectCode,
  type MetricsResponse,
  readProcess,
  RUNC_STATE_ROOT,
  RUNTIME_RUNC,
  RUNTIME_RUNCTS,
  run,
  scenario,
  sleep,
  useTasksApi,
  waitFor,
  taskList,
  taskRow,
} from './harness';
import { messageType } from '../../shim/framework/proto';

// ---------------------------------------------------------------------------------------------
// ctr helpers

async function waitStatus(cd: Containerd, id: string, status: string, timeoutMs = 15_000): Promise<boolean> {
  return waitFor(async () => (await taskRow(cd, id))?.status === status, { timeoutMs, intervalMs: 100 });
}

/** `ctr run -d`; returns the init pid, or undefined (after failing t). */
async function runDetached(t: Test, cd: Containerd, runtime: string, id: string, args: string[], extra: string[] = []): Promise<number | undefined> {
  const r = await cd.ctr(['run', '-d', '--runtime', runtime, ...extra, BUSYBOX_IMAGE, id, ...args]);
  if (!expectCode(t, r, 0, `ctr run -d ${id}`)) return undefined;
  const row = await taskRow(cd, id);
  if (!t.equal(row?.status, 'RUNNING', `${id}: RUNNING`, { tasks: await taskList(cd) })) return undefined;
  return row!.pid;
}

/**
 * Kill and delete whatever task and container of ids is still there: the scenario's own
 * cleanup, so that a failed assertion is reported as itself and not as a cascade of leaks.
 */
async function removeAll(cd: Containerd, ids: readonly string[]): Promise<void> {
  const tasks = new Set((await cd.ctr(['task', 'ls', '-q'])).stdout.split('\n').filter(Boolean));
  const containers = new Set((await cd.ctr(['containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean));
  for (const id of ids) {
    if (tasks.has(id)) {
      await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 });
      await cd.ctr(['task', 'resume', id], { timeoutMs: 10_000 }); // a paused task that ignored the kill
      await waitStatus(cd, id, 'STOPPED', 10_000);
      await cd.ctr(['task', 'delete', '--force', id], { timeoutMs: 15_000 });
    }
    if (containers.has(id)) await cd.ctr(['containers', 'delete', id], { timeoutMs: 10_000 });
  }
}

/** SIGKILL, STOPPED, `task delete` reports 137, `container delete`. */
async function killAndDelete(t: Test, cd: Containerd, id: string): Promise<void> {
  expectCode(t, await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id]), 0, `kill ${id}`);
  t.ok(await waitStatus(cd, id, 'STOPPED'), `${id}: STOPPED after SIGKILL`, { tasks: await taskList(cd) });
  const del = await cd.ctr(['task', 'delete', id]);
  expectCode(t, del, 0, `task delete ${id}`);
  t.match(del.stderr, new RegExp(`task ${id} exit with non-zero exit code 137`), `${id}: exit status 137`);
  expectCode(t, await cd.ctr(['container', 'delete', id]), 0, `container delete ${id}`);
}

/** A cgroup v1 file of a ctr container: /sys/fs/cgroup/<controller>/<ns>/<id>/<file>. */
function cgroupFile(cd: Containerd, controller: string, id: string, file: string): string {
  return path.join(CGROUP_ROOT, controller, cd.namespace, id, file);
}

function readCgroup(cd: Containerd, controller: string, id: string, file: string): string | undefined {
  try {
    return fs.readFileSync(cgroupFile(cd, controller, id, file), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The counter a container's loop writes to /tmp/count, read from the host through /proc. */
function readCounter(pid: number): number | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/root/tmp/count`, 'utf8').trim();
    return s ? Number(s) : undefined;
  } catch {
    return undefined;
  }
}

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The fields of io.containerd.cgroups.v1.Metrics the tests look at (ctr's JSON has the same shape). */
interface V1Metrics {
  pids?: { current?: number; limit?: number };
  cpu?: { usage?: { total?: number } };
  memory?: { usage?: { usage?: number; limit?: number } };
}

/** `ctr task metrics --format json`: ctr decodes the shim's Any and prints it as JSON. */
async function ctrMetrics(t: Test, cd: Containerd, id: string): Promise<V1Metrics | undefined> {
  const r = await cd.ctr(['task', 'metrics', '--format', 'json', id]);
  if (!expectCode(t, r, 0, `ctr task metrics ${id}`)) return undefined;
  try {
    return JSON.parse(r.stdout) as V1Metrics;
  } catch (e) {
    t.fail(`ctr task metrics output is JSON: ${(e as Error).message}`, { stdout: r.stdout });
    return undefined;
  }
}

/** The same without an assertion (for polling). */
async function ctrMetricsQuiet(cd: Containerd, id: string): Promise<V1Metrics | undefined> {
  const r = await cd.ctr(['task', 'metrics', '--format', 'json', id]);
  try {
    return r.code === 0 ? (JSON.parse(r.stdout) as V1Metrics) : undefined;
  } catch {
    return undefined;
  }
}

const num = (v: number | undefined): number => v ?? 0;

// ---------------------------------------------------------------------------------------------

/** Loop that bumps /tmp/count every 20 ms: its progress shows whether the container runs. */
const COUNTER_LOOP = 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; usleep 20000; done';

scenario(t, 'pause and resume: PAUSED, frozen, events, exec refused, resume, kill while paused', async (t, { cd, runtime, id, ids }) => {
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  try {
    const cid = id('pause');
    const pid = await runDetached(t, cd, runtime, cid, ['sh', '-c', COUNTER_LOOP]);
    if (pid === undefined) return;
    t.ok(await waitFor(() => num(readCounter(pid)) >= 3, { timeoutMs: 10_000 }), 'the counter runs before the pause');
    t.equal(readCgroup(cd, 'freezer', cid, 'freezer.state'), 'THAWED', 'freezer.state THAWED while running');

    const pause = await cd.ctr(['task', 'pause', cid]);
    if (!expectCode(t, pause, 0, 'ctr task pause')) return;
    t.equal((await taskRow(cd, cid))?.status, 'PAUSED', 'task ls: PAUSED');
    t.equal(readCgroup(cd, 'freezer', cid, 'freezer.state'), 'FROZEN', 'freezer.state FROZEN');
    const paused = await events.waitFor(e => e.topic === '/tasks/paused' && e.payload?.container_id === cid, 10_000);
    t.ok(paused, '/tasks/paused event for the container', { events: events.forContainer(cid).map(e => e.raw) });
    // A running loop advances ~5 times in 100 ms; frozen, it must not move at all.
    const frozenAt = readCounter(pid);
    await sleep(300);
    t.equal(readCounter(pid), frozenAt, 'the counter does not move while paused');
    t.equal(readProcess(pid)?.state, 'D', 'the init process sits in the freezer (state D)');

    const exec = await cd.ctr(['task', 'exec', '--exec-id', 'in-paused', cid, 'true']);
    t.not(exec.code, 0, 'exec into a paused container is refused');
    t.notOk(exec.timedOut, 'and does not hang');
    // Go shim: "cannot exec in a paused state: unknown".
    t.match(exec.stderr, /paused/, 'the error says the container is paused');
    if (runtime === RUNTIME_RUNCTS) t.match(exec.stderr, /failed precondition/, 'runcts: failed precondition');
    else t.comment(`${runtime}: exec into a paused container: ${exec.stderr.trim()}`);
    const again = await cd.ctr(['task', 'pause', cid]);
    t.not(again.code, 0, 'pausing a paused container is refused');
    t.match(again.stderr, /paused/, 'the error says it is paused already');
    if (runtime === RUNTIME_RUNCTS) t.match(again.stderr, /failed precondition/, 'runcts: failed precondition');
    else t.comment(`${runtime}: pause of a paused container: ${again.stderr.trim()}`);
    t.equal((await taskRow(cd, cid))?.status, 'PAUSED', 'still PAUSED after the refused requests');

    const resume = await cd.ctr(['task', 'resume', cid]);
    if (!expectCode(t, resume, 0, 'ctr task resume')) return;
    t.equal((await taskRow(cd, cid))?.status, 'RUNNING', 'task ls: RUNNING again');
    t.equal(readCgroup(cd, 'freezer', cid, 'freezer.state'), 'THAWED', 'freezer.state THAWED');
    const resumed = await events.waitFor(e => e.topic === '/tasks/resumed' && e.payload?.container_id === cid, 10_000);
    t.ok(resumed, '/tasks/resumed event for the container');
    const resumedAt = num(readCounter(pid));
    t.ok(await waitFor(() => num(readCounter(pid)) >= resumedAt + 3, { timeoutMs: 10_000 }), 'the counter moves again after resume');
    const again2 = await cd.ctr(['task', 'resume', cid]);
    t.not(again2.code, 0, 'resuming a running container is refused');
    if (runtime !== RUNTIME_RUNCTS) t.comment(`${runtime}: resume of a running container: ${again2.stderr.trim()}`);

    // Pause again, then SIGKILL the frozen container (runc thaws it for SIGKILL).
    expectCode(t, await cd.ctr(['task', 'pause', cid]), 0, 'second pause');
    t.equal((await taskRow(cd, cid))?.status, 'PAUSED', 'PAUSED again');
    await events.waitFor(e => e.topic === '/tasks/paused' && e.payload?.container_id === cid && e !== paused, 10_000);
    expectCode(t, await cd.ctr(['task', 'kill', '-s', 'SIGKILL', cid]), 0, 'kill -s SIGKILL of the paused container');
    t.ok(await waitStatus(cd, cid, 'STOPPED'), 'the paused container reaches STOPPED', { tasks: await taskList(cd) });
    t.notOk(readProcess(pid), 'its init is gone (reaped)');
    const exit = await events.waitFor(e => e.topic === '/tasks/exit' && e.payload?.container_id === cid, 10_000);
    t.equal(exit?.payload?.exit_status, 137, '/tasks/exit with 137');
    const del = await cd.ctr(['task', 'delete', cid]);
    expectCode(t, del, 0, 'task delete');
    t.match(del.stderr, new RegExp(`task ${cid} exit with non-zero exit code 137`), 'exit status 137 reported');
    expectCode(t, await cd.ctr(['container', 'delete', cid]), 0, 'container delete');

    await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === cid, 10_000);
    const topics = events.forContainer(cid).map(e => e.topic).filter(tp => tp.startsWith('/tasks/'));
    t.same(
      topics,
      ['/tasks/create', '/tasks/start', '/tasks/paused', '/tasks/resumed', '/tasks/paused', '/tasks/exit', '/tasks/delete'],
      'task events: create, start, paused, resumed, paused, exit, delete (refused requests publish nothing)',
      { events: events.forContainer(cid).map(e => e.raw) },
    );
  } finally {
    await removeAll(cd, ids);
  }
});

scenario(t, 'update, metrics, ps', async (t, { cd, runtime, id, ids }) => {
  const api = useTasksApi(t, cd);
  try {
    const cid = id('stats');
    const pid = await runDetached(t, cd, runtime, cid, ['sleep', '1000']);
    if (pid === undefined) return;
    expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'sleeper', cid, 'sleep', '999']), 0, 'exec -d sleeper');

    // ps: the init and the exec, the exec with its id.
    const ps = await cd.ctr(['task', 'ps', cid]);
    expectCode(t, ps, 0, 'ctr task ps');
    const rows = ps.stdout.split('\n').slice(1).map(l => l.trim()).filter(Boolean);
    t.equal(rows.length, 2, 'ps: two processes', { stdout: ps.stdout });
    t.ok(rows.some(r => Number(r.split(/\s+/)[0]) === pid), 'ps: the init pid');
    const execRow = rows.find(r => Number(r.split(/\s+/)[0]) !== pid) ?? '';
    // ctr prints the ProcessDetails Any: `&ProcessDetails{ExecID:sleeper,XXX_unrecognized:[],}`.
    t.match(execRow, /ExecID:sleeper\b/, 'ps: the exec row carries its exec id', { stdout: ps.stdout });
    t.same(readProcess(Number(execRow.split(/\s+/)[0]))?.argv, ['sleep', '999'], "ps: the exec row's pid is the exec");

    // metrics through gRPC: the Any is an io.containerd.cgroups.v1.Metrics.
    const m = await api.call<MetricsResponse>('Metrics', { filters: [`id==${cid}`] });
    t.notOk(m.err, 'Tasks.Metrics succeeds', { err: m.err });
    const entry = m.res?.metrics.find(x => x.id === cid);
    t.equal(entry?.data?.type_url, 'io.containerd.cgroups.v1.Metrics', 'metrics Any type URL io.containerd.cgroups.v1.Metrics');
    if (entry?.data) {
      const decoded = messageType('io.containerd.cgroups.v1.Metrics').toObject(messageType('io.containerd.cgroups.v1.Metrics').decode(entry.data.value), {
        longs: String,
      }) as { pids?: { current?: string }; memory?: { usage?: { limit?: string } }; cpu?: { usage?: { total?: string } } };
      t.equal(decoded.pids?.current, '2', 'decoded with our proto: pids.current = 2 (init + exec)');
      t.equal(decoded.memory?.usage?.limit, readCgroup(cd, 'memory', cid, 'memory.limit_in_bytes'), 'decoded: memory.usage.limit = memory.limit_in_bytes');
      t.ok(Number(decoded.cpu?.usage?.total) > 0, 'decoded: cpu.usage.total > 0');
    }
    const none = await api.call<MetricsResponse>('Metrics', { filters: ['id==no-such-task'] });
    t.same(none.res?.metrics, [], 'Tasks.Metrics for an unknown id: empty list (containerd filters, no shim asked)');

    // metrics through ctr; cpu grows under a busy loop, memory under an allocation, pids count.
    const m0 = await ctrMetrics(t, cd, cid);
    if (!m0) return;
    t.equal(m0.pids?.current, 2, 'ctr task metrics: pids.current = 2');
    t.equal(m0.pids?.current, Number(readCgroup(cd, 'pids', cid, 'pids.current')), 'pids.current = the cgroup file pids.current');
    const cpu0 = num(m0.cpu?.usage?.total);
    const mem0 = num(m0.memory?.usage?.usage);
    t.ok(mem0 > 0, 'memory.usage.usage > 0');

    expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'burn', cid, 'sh', '-c', 'while :; do :; done']), 0, 'exec -d a busy loop');
    let last: V1Metrics | undefined;
    const cpuGrew = await waitFor(
      async () => {
        last = await ctrMetricsQuiet(cd, cid);
        return num(last?.cpu?.usage?.total) - cpu0 >= 300e6;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    t.ok(cpuGrew, 'cpu.usage.total grows by >= 300 ms while the container burns cpu', { before: cpu0, after: last?.cpu?.usage?.total });
    t.equal(last?.pids?.current, 3, 'pids.current = 3 with the busy loop');
    t.ok(num(last?.cpu?.usage?.total) <= Number(readCgroup(cd, 'cpuacct', cid, 'cpuacct.usage')), 'cpu.usage.total is at most cpuacct.usage read afterwards');
    expectCode(t, await cd.ctr(['task', 'kill', '--exec-id', 'burn', '-s', 'SIGKILL', cid]), 0, 'kill the busy loop');
    t.ok(await waitFor(async () => (last = await ctrMetricsQuiet(cd, cid))?.pids?.current === 2, { timeoutMs: 10_000, intervalMs: 100 }), 'pids.current back to 2', { pids: last?.pids, procs: readCgroup(cd, 'pids', cid, 'cgroup.procs') });
    // ctr exits with the deleted exec's status.
    expectCode(t, await cd.ctr(['task', 'delete', '--exec-id', 'burn', cid]), 137, 'delete the busy loop exec (its status: 137)');

    // ~30 MB held in a shell variable; the shell then says so and blocks opening a fifo nobody
    // writes, with no child of its own (a last `sleep` would replace the shell, an earlier one
    // would outlive it).
    const hog = `mkfifo /tmp/hold && x=$(head -c 30000000 /dev/zero | tr '\\0' a) && : > /tmp/held && read y < /tmp/hold`;
    expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'hog', cid, 'sh', '-c', hog]), 0, 'exec -d a memory hog');
    t.ok(await waitFor(() => fs.existsSync(`/proc/${pid}/root/tmp/held`), { timeoutMs: 20_000 }), 'the hog holds its memory');
    const memGrew = await waitFor(
      async () => {
        last = await ctrMetricsQuiet(cd, cid);
        return num(last?.memory?.usage?.usage) - mem0 >= 25e6;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    t.ok(memGrew, 'memory.usage.usage grows by >= 25 MB while the container holds 30 MB', { before: mem0, after: last?.memory?.usage?.usage });
    expectCode(t, await cd.ctr(['task', 'kill', '--exec-id', 'hog', '-s', 'SIGKILL', cid]), 0, 'kill the memory hog');
    t.ok(await waitFor(async () => (last = await ctrMetricsQuiet(cd, cid))?.pids?.current === 2, { timeoutMs: 10_000, intervalMs: 100 }), 'pids.current back to 2', { pids: last?.pids, procs: readCgroup(cd, 'pids', cid, 'cgroup.procs') });
    expectCode(t, await cd.ctr(['task', 'delete', '--exec-id', 'hog', cid]), 137, 'delete the hog exec (its status: 137)');

    const unknown = await cd.ctr(['task', 'metrics', 'no-such-task']);
    t.not(unknown.code, 0, 'ctr task metrics of an unknown task fails');
    t.match(unknown.stderr, /not found/, 'not found');

    // update: ctr 1.6 has no `task update`; containerd's Tasks.Update with a LinuxResources.
    t.equal(readCgroup(cd, 'cpu', cid, 'cpu.cfs_quota_us'), '-1', 'no cpu quota before the update');
    const MEM = 64 * 1024 * 1024;
    const u = await api.update(cid, { memory: { limit: MEM }, cpu: { quota: 50_000, period: 200_000 } });
    t.notOk(u.err, 'Tasks.Update succeeds', { err: u.err });
    t.equal(readCgroup(cd, 'memory', cid, 'memory.limit_in_bytes'), String(MEM), 'memory.limit_in_bytes = 64 MiB');
    t.equal(readCgroup(cd, 'cpu', cid, 'cpu.cfs_quota_us'), '50000', 'cpu.cfs_quota_us = 50000');
    t.equal(readCgroup(cd, 'cpu', cid, 'cpu.cfs_period_us'), '200000', 'cpu.cfs_period_us = 200000');
    const m1 = await ctrMetrics(t, cd, cid);
    t.equal(m1?.memory?.usage?.limit, MEM, 'metrics report the new memory limit');
    t.equal((await taskRow(cd, cid))?.status, 'RUNNING', 'still RUNNING after the update');
    const u2 = await api.update(cid, { cpu: { quota: 20_000 } });
    t.notOk(u2.err, 'a second, partial update succeeds', { err: u2.err });
    t.equal(readCgroup(cd, 'cpu', cid, 'cpu.cfs_quota_us'), '20000', 'cpu.cfs_quota_us = 20000');
    t.equal(readCgroup(cd, 'memory', cid, 'memory.limit_in_bytes'), String(MEM), 'memory limit untouched by the partial update');

    const missing = await api.update('no-such-task', { cpu: { quota: 20_000 } });
    t.equal(missing.err?.code, grpc.status.NOT_FOUND, 'update of an unknown task: NOT_FOUND');

    // A stopped task cannot be updated.
    expectCode(t, await cd.ctr(['task', 'kill', '-s', 'SIGKILL', cid]), 0, 'kill');
    t.ok(await waitStatus(cd, cid, 'STOPPED'), 'STOPPED');
    const stopped = await api.update(cid, { cpu: { quota: 30_000 } });
    t.ok(stopped.err, 'update of a stopped task is refused');
    t.match(stopped.err?.details ?? '', /stopped/, 'the error says the task is stopped');
    // Go shim: UNKNOWN "cannot update a stopped container: unknown".
    if (runtime === RUNTIME_RUNCTS) t.equal(stopped.err?.code, grpc.status.FAILED_PRECONDITION, 'runcts: FAILED_PRECONDITION');
    else t.comment(`${runtime}: update of a stopped task: code ${stopped.err?.code} ${JSON.stringify(stopped.err?.details)}`);
    const del = await cd.ctr(['task', 'delete', cid]);
    expectCode(t, del, 0, 'task delete');
    t.match(del.stderr, new RegExp(`task ${cid} exit with non-zero exit code 137`), 'exit status 137');
    expectCode(t, await cd.ctr(['container', 'delete', cid]), 0, 'container delete');
  } finally {
    await removeAll(cd, ids);
  }
});

scenario(t, 'OOM kill: /tasks/oom before /tasks/exit, exit status 137', async (t, { cd, runtime, id, ids }) => {
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  try {
    const cid = id('oom');
    // The shell collects ~100 MB into a variable under a 16 MiB limit.
    const r = await cd.ctr([
      'run', '--rm', '--runtime', runtime, '--memory-limit', '16777216', BUSYBOX_IMAGE, cid,
      'sh', '-c', `x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived`,
    ]);
    expectCode(t, r, 137, 'ctr run: exit code 137 (killed by the OOM killer)');
    t.notMatch(r.stdout, /survived/, 'the shell did not survive');
    const del = await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === cid, 15_000);
    t.ok(del, '/tasks/delete seen');
    const mine = events.forContainer(cid).filter(e => e.topic.startsWith('/tasks/'));
    const topics = mine.map(e => e.topic);
    const oom = topics.indexOf('/tasks/oom');
    const exit = topics.indexOf('/tasks/exit');
    t.ok(oom >= 0, '/tasks/oom published for the container', { events: mine.map(e => e.raw) });
    t.ok(exit >= 0, '/tasks/exit published');
    t.ok(oom >= 0 && oom < exit, '/tasks/oom comes before /tasks/exit', { topics });
    t.equal(mine[exit]?.payload?.exit_status, 137, 'TaskExit exit_status 137');
    t.equal(topics.filter(x => x === '/tasks/exit').length, 1, 'one /tasks/exit');
    t.same(topics.filter(x => x !== '/tasks/oom'), ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], 'lifecycle events in order');
  } finally {
    await removeAll(cd, ids);
  }
});

scenario(t, 'checkpoint without a working criu: a clear error, the task keeps running, nothing left', async (t, { cd, runtime, id, ids }) => {
  // The scenario's premise: criu cannot work on this kernel (criu 3.17: `criu check` fails on vdso).
  const check = await run('criu', ['check'], { timeoutMs: 30_000 });
  t.not(check.code, 0, 'premise: `criu check` fails on this machine', { stderr: check.stderr });
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  const api = useTasksApi(t, cd);
  try {
    const cid = id('ckpt');
    const pid = await runDetached(t, cd, runtime, cid, ['sh', '-c', COUNTER_LOOP]);
    if (pid === undefined) return;
    const bundle = path.join(cd.taskStateDir(), cid);
    const workDir = path.join(cd.taskRootDir(), cid);
    const runcState = path.join(RUNC_STATE_ROOT, cd.namespace, cid);
    const before = { bundle: listDir(bundle), work: listDir(workDir), runc: listDir(runcState) };
    const images = (await cd.ctrOk(['images', 'ls', '-q'])).stdout;

    // ctr: Pause, Tasks.Checkpoint, Resume (containerd's client pauses around the checkpoint).
    const ck = await cd.ctr(['task', 'checkpoint', cid], { timeoutMs: 60_000 });
    t.not(ck.code, 0, 'ctr task checkpoint fails');
    t.notOk(ck.timedOut, 'and does not hang');
    t.comment(`${runtime}: ctr task checkpoint: ${ck.stderr.trim()}`);
    if (runtime === RUNTIME_RUNCTS) {
      t.match(ck.stderr, /criu/i, 'runcts: the error names criu');
      t.match(ck.stderr, /checkpoint/i, 'runcts: the error names checkpoint');
      t.match(ck.stderr, /failed precondition/, 'runcts: failed precondition');
    } else {
      t.match(ck.stderr, /criu/, "the Go shim passes runc's criu error on");
    }
    t.equal((await taskRow(cd, cid))?.status, 'RUNNING', 'task RUNNING afterwards');
    t.equal((await taskRow(cd, cid))?.pid, pid, 'same pid');
    t.equal(readCgroup(cd, 'freezer', cid, 'freezer.state'), 'THAWED', 'not left frozen');
    const c0 = num(readCounter(pid));
    t.ok(await waitFor(() => num(readCounter(pid)) >= c0 + 3, { timeoutMs: 10_000 }), 'the container keeps running');
    const hello = await cd.ctr(['task', 'exec', '--exec-id', 'after-ckpt', cid, 'echo', 'hello']);
    expectCode(t, hello, 0, 'exec after the failed checkpoint');
    t.equal(hello.stdout, 'hello\n', 'exec output');

    // Directly, without the pause around it: the exact status code.
    const direct = await api.call<object>('Checkpoint', { container_id: cid });
    t.ok(direct.err, 'Tasks.Checkpoint fails');
    if (runtime === RUNTIME_RUNCTS) {
      t.equal(direct.err?.code, grpc.status.FAILED_PRECONDITION, 'runcts: FAILED_PRECONDITION', { err: direct.err });
      t.match(direct.err?.details ?? '', /criu/i, 'runcts: names criu');
    } else {
      t.comment(`${runtime}: Tasks.Checkpoint: code ${direct.err?.code} ${JSON.stringify(direct.err?.details)}`);
    }
    t.equal((await taskRow(cd, cid))?.status, 'RUNNING', 'still RUNNING after the direct call');

    const after = { bundle: listDir(bundle), work: listDir(workDir), runc: listDir(runcState) };
    if (runtime === RUNTIME_RUNCTS) {
      t.same(after, before, 'runcts: no checkpoint leftovers in the bundle, the work dir or the runc state');
    } else {
      const extra = (k: keyof typeof before): string[] => after[k].filter(f => !before[k].includes(f));
      t.comment(`${runtime}: left after the failed checkpoints: bundle +[${extra('bundle').join(', ')}] work +[${extra('work').join(', ')}] runc state +[${extra('runc').join(', ')}]`);
    }
    t.equal((await cd.ctrOk(['images', 'ls', '-q'])).stdout, images, 'no checkpoint image created');

    await killAndDelete(t, cd, cid);
    await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === cid, 10_000);
    const topics = events.forContainer(cid).map(e => e.topic).filter(tp => /^\/tasks\/(paused|resumed|checkpointed)$/.test(tp));
    t.same(topics, ['/tasks/paused', '/tasks/resumed'], 'events: one /tasks/paused and /tasks/resumed around the ctr attempt, no /tasks/checkpointed', {
      events: events.forContainer(cid).map(e => e.raw),
    });
  } finally {
    await removeAll(cd, ids);
  }
});
