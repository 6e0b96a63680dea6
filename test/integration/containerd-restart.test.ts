// containerd goes away and comes back (SIGTERM: a restart; SIGKILL: a crash) while its shims
// keep running: the tasks survive, a task that exited meanwhile is STOPPED with its status, the
// TaskExit produced while containerd was down reaches it once it is back, and everything can
// still be driven and cleaned up through ctr.
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'node:fs';
import { BUSYBOX_IMAGE, Containerd, EventStream, expectCode, isAlive, readProcess, scenario, waitFor } from './harness';

interface TaskRow {
  id: string;
  pid: number;
  status: string;
}

/** `ctr task ls` rows: TASK PID STATUS. */
async function taskList(cd: Containerd): Promise<TaskRow[]> {
  const r = await cd.ctrOk(['task', 'ls']);
  return r.stdout
    .split('\n')
    .slice(1)
    .map(l => l.trim().split(/\s+/))
    .filter(f => f.length === 3)
    .map(([id, pid, status]) => ({ id: id!, pid: Number(pid), status: status! }));
}

async function taskRow(cd: Containerd, id: string): Promise<TaskRow | undefined> {
  return (await taskList(cd)).find(r => r.id === id);
}

/** `ctr task ps`: pid → INFO column. */
async function taskPs(cd: Containerd, id: string): Promise<Map<number, string>> {
  const r = await cd.ctr(['task', 'ps', id]);
  const m = new Map<number, string>();
  if (r.code !== 0) return m;
  for (const l of r.stdout.split('\n').slice(1)) {
    const [pid, ...info] = l.trim().split(/\s+/);
    if (Number(pid) > 0) m.set(Number(pid), info.join(' '));
  }
  return m;
}

/** containerd's debug line for a forwarded event (events/exchange: `event forwarded`). */
function forwardedEvents(log: string, ns: string, topic: string): string[] {
  return log
    .split('\n')
    .filter(l => l.includes('msg="event forwarded"') && l.includes(` ns=${ns} `) && l.includes(` topic=${topic} `));
}

function readLogFrom(cd: Containerd, offset: number): string {
  const fd = fs.openSync(cd.logPath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    fs.readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

async function removeAll(cd: Containerd, ids: readonly string[]): Promise<void> {
  if (!cd.running) return;
  const tasks = new Set((await cd.ctr(['task', 'ls', '-q'])).stdout.split('\n').filter(Boolean));
  const containers = new Set((await cd.ctr(['containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean));
  for (const id of ids) {
    if (tasks.has(id)) {
      await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 });
      await waitFor(async () => (await taskRow(cd, id))?.status === 'STOPPED', { timeoutMs: 10_000, intervalMs: 100 });
      await cd.ctr(['task', 'delete', '--force', id], { timeoutMs: 15_000 });
    }
    if (containers.has(id)) await cd.ctr(['containers', 'delete', id], { timeoutMs: 10_000 });
  }
}

async function restartScenario(t: Test, cd: Containerd, runtime: string, id: (p: string) => string, signal: NodeJS.Signals): Promise<void> {
  const long = id('long');
  const short = id('short');
  expectCode(t, await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, long, 'sleep', '1000']), 0, 'run -d the long-runner');
  // Exits 7 once /tmp/go exists: the test creates it while containerd is down.
  const waitGo = 'while [ ! -e /tmp/go ]; do usleep 20000; done; exit 7';
  expectCode(t, await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, short, 'sh', '-c', waitGo]), 0, 'run -d the one that exits later');
  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'keep', long, 'sleep', '999']), 0, 'exec -d into the long-runner');
  const before = await taskList(cd);
  const longPid = before.find(r => r.id === long)?.pid ?? 0;
  const shortPid = before.find(r => r.id === short)?.pid ?? 0;
  if (!t.ok(longPid > 0 && shortPid > 0, 'both tasks listed with pids', { before })) return;
  const execPid = [...(await taskPs(cd, long)).entries()].find(([, info]) => /ExecID:keep\b/.test(info))?.[0] ?? 0;
  if (!t.ok(execPid > 0, 'task ps lists the exec with its id')) return;
  const shimsBefore = cd.shims().map(p => p.pid).sort();
  t.equal(shimsBefore.length, 2, 'two shims');

  await cd.stopDaemon(signal);
  t.notOk(cd.running, `containerd stopped (${signal})`);
  t.same(cd.shims().map(p => p.pid).sort(), shimsBefore, 'the shims keep running without containerd');
  const logOffset = fs.statSync(cd.logPath).size;

  // Let the short task exit now, with nobody to tell.
  fs.writeFileSync(`/proc/${shortPid}/root/tmp/go`, '');
  const reaped = await waitFor(() => !readProcess(shortPid), { timeoutMs: 10_000 });
  t.ok(reaped, 'the short task exited and its shim reaped it while containerd was down');
  t.ok(isAlive(longPid) && isAlive(execPid), 'the long-runner and its exec still run');

  await cd.restart();
  t.ok(cd.running, 'containerd restarted');
  const after = await taskList(cd);
  t.same(after.find(r => r.id === long), { id: long, pid: longPid, status: 'RUNNING' }, 'long-runner: RUNNING, same pid', { after });
  t.same(after.find(r => r.id === short), { id: short, pid: shortPid, status: 'STOPPED' }, 'short: STOPPED', { after });
  const ps = await taskPs(cd, long);
  t.same([...ps.keys()].sort((a, b) => a - b), [longPid, execPid].sort((a, b) => a - b), 'task ps: the init and the exec, as before');
  t.match(ps.get(execPid) ?? '', /ExecID:keep\b/, 'the exec still has its id');

  // The TaskExit produced while containerd was down is forwarded once containerd is back
  // (Go shim: retried after 1, 2, 3... s; runcts: the outbox retries with backoff up to 2 s).
  // Nothing else in our namespace exits until the kills below, so this line is the short task's.
  let forwarded: string[] = [];
  await waitFor(() => (forwarded = forwardedEvents(readLogFrom(cd, logOffset), cd.namespace, '/tasks/exit')).length > 0, { timeoutMs: 30_000, intervalMs: 100 });
  t.equal(forwarded.length, 1, 'containerd received exactly one /tasks/exit from the shims after the restart', { forwarded });
  t.match(forwarded[0] ?? '', /type=containerd\.events\.TaskExit/, 'a containerd.events.TaskExit');

  // From here on events flow live: a subscriber sees the exits of the kills below.
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());

  const del = await cd.ctr(['task', 'delete', short]);
  expectCode(t, del, 0, 'task delete of the task that exited while containerd was down');
  t.match(del.stderr, new RegExp(`task ${short} exit with non-zero exit code 7`), 'exit status 7');
  const delEv = await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === short, 10_000);
  t.equal(delEv?.payload?.exit_status, 7, '/tasks/delete with exit_status 7');
  t.equal(delEv?.payload?.pid, shortPid, '/tasks/delete with its pid');
  expectCode(t, await cd.ctr(['container', 'delete', short]), 0, 'container delete short');
  t.equal(forwardedEvents(readLogFrom(cd, logOffset), cd.namespace, '/tasks/exit').length, 1, 'and no second copy of it arrived later');

  const hello = await cd.ctr(['task', 'exec', '--exec-id', 'after', long, 'echo', 'hello']);
  expectCode(t, hello, 0, 'a new exec after the restart');
  t.equal(hello.stdout, 'hello\n', 'its output reaches ctr');
  const afterEv = await events.waitFor(e => e.topic === '/tasks/exit' && e.payload?.container_id === long && e.payload?.id === 'after', 10_000);
  t.ok(afterEv, "the new exec's /tasks/exit reaches a subscriber", { events: events.events.map(e => e.raw), other: events.other });
  t.equal(afterEv?.payload?.exit_status ?? 0, 0, 'with exit status 0 (proto3 leaves a zero out of the JSON)');

  expectCode(t, await cd.ctr(['task', 'kill', '-s', 'SIGKILL', long]), 0, 'kill the long-runner');
  t.ok(await waitFor(async () => (await taskRow(cd, long))?.status === 'STOPPED', { timeoutMs: 15_000, intervalMs: 100 }), 'long-runner STOPPED');
  const exitEv = await events.waitFor(e => e.topic === '/tasks/exit' && e.payload?.container_id === long && e.payload?.id === long, 10_000);
  t.equal(exitEv?.payload?.exit_status, 137, '/tasks/exit of the long-runner: 137');
  const keepEv = events.forContainer(long).find(e => e.topic === '/tasks/exit' && e.payload?.id === 'keep');
  t.ok(keepEv, "the old exec's /tasks/exit (it dies with its container)");
  t.notOk(isAlive(execPid), 'the old exec is gone');
  const delLong = await cd.ctr(['task', 'delete', long]);
  expectCode(t, delLong, 0, 'task delete long');
  t.match(delLong.stderr, new RegExp(`task ${long} exit with non-zero exit code 137`), 'exit status 137');
  expectCode(t, await cd.ctr(['container', 'delete', long]), 0, 'container delete long');
  t.same(await taskList(cd), [], 'no tasks left');
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  scenario(t, `containerd restart after ${signal}: tasks survive, the exit while it was down arrives`, async (t, { cd, runtime, id, ids }) => {
    try {
      await restartScenario(t, cd, runtime, id, signal);
    } finally {
      if (!cd.running) await cd.restart();
      await removeAll(cd, ids);
    }
  });
}
