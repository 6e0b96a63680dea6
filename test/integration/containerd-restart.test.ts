// containerd goes away and comes back (SIGTERM: a restart; SIGKILL: a crash) while its shims
// keep running: the tasks survive, a task that exited meanwhile is STOPPED with its status, the
// TaskExit produced while containerd was down reaches it once it is back, and everything can
// still be driven and cleaned up through ctr. A second scenario leaves a backlog of several
// TaskExits in one shim while containerd is down and checks that each reaches containerd once,
// and for runcts in the order the processes exited.
//
// RUNCTS_TEST_SHIM_ROOT=<dir> runs runcts from another runcts tree (a deliberately broken copy,
// e.g. an outbox that delivers the newest event first: the backlog scenario must fail).
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BUSYBOX_IMAGE, Containerd, EventStream, RUNTIME_RUNCTS, expectCode, isAlive, readProcess, scenario, sleep, waitFor, taskList, taskRow } from './harness';

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

/** The `time="..."` of a containerd log line, in ms since the epoch (NaN if absent). */
function logTime(line: string): number {
  const m = /time="([^"]+)"/.exec(line);
  return m ? Date.parse(m[1]!) : NaN;
}

/** RUNCTS_TEST_SHIM_ROOT: containerd looks the shim up in its PATH at every start; re-point the harness's symlink. */
function useAltShimRoot(t: Test, cd: Containerd, runtime: string): void {
  const alt = process.env.RUNCTS_TEST_SHIM_ROOT;
  if (!alt || runtime !== RUNTIME_RUNCTS) return;
  const link = path.join(cd.binDir, 'containerd-shim-runcts-v2');
  fs.rmSync(link, { force: true });
  fs.symlinkSync(path.join(alt, 'bin', 'containerd-shim-runcts-v2'), link);
  t.comment(`shim binary: ${fs.readlinkSync(link)}`);
}

/**
 * A backlog in one shim while containerd is down: two execs and then the init of one container
 * exit one after the other (exit 3, 4, 5), so the shim's outbox holds TaskExit(e1), TaskExit(e2),
 * TaskExit(init), in that order, and nothing else.
 *
 * How the order containerd received them is observed. containerd 1.6's only trace of a forwarded
 * event is events/exchange's debug line `event forwarded` with ns, topic and type (exchange.go:
 * Forward) -- no container, exec id, pid or status; with the CRI plugin off nothing else in
 * containerd subscribes to /tasks/exit. So the test needs a subscriber (`ctr events`) that is
 * attached before the first event of the backlog can reach containerd, and containerd starts
 * its ttrpc listener (the one the shims forward to) before its grpc one, right after it has
 * reloaded the shims: on a plain restart the shims may deliver before any client can subscribe.
 * Hence a gate: containerd is restarted with its ttrpc socket under another name (config.toml
 * edited for that one start, restored right after), so the shims, which keep the TTRPC_ADDRESS
 * they were started with, get ENOENT and keep retrying; containerd's log shows that nothing was
 * forwarded while the gate was shut. Once `ctr events` is subscribed (its probe event came
 * back), the gate is opened by hard-linking the socket under the old name: from then on the
 * shims reach the very listener containerd serves. containerd's exchange hands the events to
 * each subscriber through one queue in the order Forward ran, and ctr prints them in arrival
 * order, so the stream's order is containerd's order of reception, and each TaskExit names its
 * exec id, pid and status. The forwarded lines in containerd's log are counted as well (exactly
 * three /tasks/exit and nothing else from the shim before the delete), which covers "exactly
 * once" independently of the subscriber. The gate opens about 1 s after e1's exit, well inside
 * the Go shim's retry budget (tries 1, 3, 6, 10, 15 s after the first, then it evicts the event).
 */
async function backlogScenario(t: Test, cd: Containerd, runtime: string, id: (p: string) => string, signal: NodeJS.Signals): Promise<void> {
  const c = id('backlog');
  const waitMarker = (name: string, code: number): string => `while [ ! -e /tmp/${name} ]; do usleep 20000; done; exit ${code}`;
  expectCode(t, await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, c, 'sh', '-c', waitMarker('init', 5)]), 0, 'run -d the container (its init exits 5 on /tmp/init)');
  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'e1', c, 'sh', '-c', waitMarker('e1', 3)]), 0, 'exec -d e1 (exits 3 on /tmp/e1)');
  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'e2', c, 'sh', '-c', waitMarker('e2', 4)]), 0, 'exec -d e2 (exits 4 on /tmp/e2)');
  const initPid = (await taskRow(cd, c))?.pid ?? 0;
  const ps = [...(await taskPs(cd, c)).entries()];
  const pidOf = (exec: string): number => ps.find(([, info]) => new RegExp(`ExecID:${exec}\\b`).test(info))?.[0] ?? 0;
  const e1Pid = pidOf('e1');
  const e2Pid = pidOf('e2');
  if (!t.ok(initPid > 0 && e1Pid > 0 && e2Pid > 0, 'the init and both execs have pids', { ps })) return;
  // Everything published so far has reached containerd, so the backlog below is only the exits.
  const upTo = (topic: string): number => forwardedEvents(readLogFrom(cd, 0), cd.namespace, topic).length;
  t.ok(await waitFor(() => upTo('/tasks/start') === 1 && upTo('/tasks/exec-started') === 2, { timeoutMs: 10_000 }), 'start and both exec-started forwarded before containerd goes away');
  const shimsBefore = cd.shims().map(p => p.pid);
  t.equal(shimsBefore.length, 1, 'one shim');

  await cd.stopDaemon(signal);
  t.notOk(cd.running, `containerd stopped (${signal})`);
  const logOffset = fs.statSync(cd.logPath).size;

  // One at a time, each reaped (gone from /proc, not even a zombie) before the next is let go,
  // and a pause for the shim to publish it: the order of the exits is e1, e2, init.
  const exitedAt: Record<string, number> = {};
  for (const [name, pid] of [['e1', e1Pid], ['e2', e2Pid], ['init', initPid]] as const) {
    fs.writeFileSync(`/proc/${initPid}/root/tmp/${name}`, '');
    t.ok(await waitFor(() => !readProcess(pid), { timeoutMs: 10_000, intervalMs: 10 }), `${name} exited and was reaped while containerd was down`);
    exitedAt[name] = Date.now();
    await sleep(300);
  }
  t.same(cd.shims().map(p => p.pid), shimsBefore, 'the shim keeps running without containerd');

  // Restart behind the gate (see above).
  const gated = `${cd.ttrpcAddress}.gated`;
  const config = fs.readFileSync(cd.configPath, 'utf8');
  const ttrpcLine = `address = ${JSON.stringify(cd.ttrpcAddress)}`;
  if (!t.ok(config.includes(ttrpcLine), "config.toml names containerd's ttrpc socket")) return;
  fs.writeFileSync(cd.configPath, config.replace(ttrpcLine, `address = ${JSON.stringify(gated)}`));
  fs.rmSync(cd.ttrpcAddress, { force: true }); // a SIGKILLed containerd leaves it behind
  const restartAt = Date.now();
  try {
    await cd.restart();
  } finally {
    fs.writeFileSync(cd.configPath, config);
  }
  const upAt = Date.now();
  t.ok(cd.running, 'containerd restarted');
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  const forwardedNow = (): string[] => readLogFrom(cd, logOffset).split('\n').filter(l => l.includes('msg="event forwarded"') && l.includes(` ns=${cd.namespace} `));
  t.same(forwardedNow(), [], 'nothing forwarded while the gate was shut (the shim could not reach containerd yet)');
  t.equal(events.forContainer(c).length, 0, 'and the subscriber has seen nothing of the container');
  const openedAt = Date.now();
  fs.linkSync(gated, cd.ttrpcAddress);

  const exitsSeen = (): typeof events.events => events.forContainer(c).filter(e => e.topic === '/tasks/exit');
  const complete = await waitFor(() => exitsSeen().length >= 3, { timeoutMs: 30_000, intervalMs: 20 });
  t.ok(complete, 'three /tasks/exit reach the subscriber', { events: events.events.map(e => e.raw), other: events.other });
  // A late duplicate would come within the retry intervals (runcts: 2 s at most; Go shim: the
  // next of 1, 2, 3... s).
  await sleep(3000);

  const exits = exitsSeen();
  const label = (e: (typeof exits)[number]): string => `${e.payload?.id === c ? 'init' : String(e.payload?.id)}:${String(e.payload?.exit_status ?? 0)}`;
  const got = exits.map(label);
  const want = ['e1:3', 'e2:4', 'init:5'];
  t.same([...got].sort(), want, 'each exit arrived exactly once, with its status (e1 3, e2 4, init 5)', { events: exits.map(e => e.raw) });
  const pids = Object.fromEntries(exits.map(e => [label(e), e.payload?.pid]));
  t.same(pids, { 'e1:3': e1Pid, 'e2:4': e2Pid, 'init:5': initPid }, 'each with its pid');
  t.ok(exits.every(e => e.payload?.container_id === c), 'all for the container');
  // containerd's own count, independent of the subscriber: the backlog was these three, once each.
  const fwd = forwardedNow();
  t.same(fwd.map(l => / topic=(\S+) /.exec(l)?.[1]), ['/tasks/exit', '/tasks/exit', '/tasks/exit'], 'containerd forwarded exactly three events for the namespace after the restart, all /tasks/exit', { fwd });
  t.ok(fwd.every(l => /type=containerd\.events\.TaskExit/.test(l)), 'each a containerd.events.TaskExit');
  const times = fwd.map(logTime);
  t.comment(`${runtime} ${signal}: exits at +0/+${exitedAt.e2! - exitedAt.e1!}/+${exitedAt.init! - exitedAt.e1!} ms; ` +
    `containerd up ${upAt - restartAt} ms after the restart began, gate opened ${openedAt - restartAt} ms after it (${openedAt - exitedAt.e1!} ms after e1's exit); ` +
    `backlog forwarded +${times.map(x => Math.round(x - openedAt)).join('/+')} ms after the gate opened; order ${got.join(', ')}`);
  if (runtime === RUNTIME_RUNCTS) {
    t.same(got, want, 'runcts: in the order they happened: e1, e2, then the init');
    t.equal(got.indexOf('init:5'), 2, "the init's exit after both execs' (DESIGN lesson 3)");
  } else {
    // containerd 1.6's Go shim requeues each failed event on its own timer (1, 2, 3... s after
    // its last try, evicted after 5 retries): the order it lands in depends on when containerd
    // came back relative to each timer.
    t.comment(`Go shim order: ${got.join(', ')}${got.join() === want.join() ? ' (the order they happened)' : ' (reordered)'}`);
  }

  const row = await taskRow(cd, c);
  t.same(row, { id: c, pid: initPid, status: 'STOPPED' }, 'task STOPPED with its pid');
  const del = await cd.ctr(['task', 'delete', c]);
  expectCode(t, del, 0, 'task delete');
  t.match(del.stderr, new RegExp(`task ${c} exit with non-zero exit code 5`), 'exit status 5');
  const delEv = await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === c, 10_000);
  t.equal(delEv?.payload?.exit_status, 5, '/tasks/delete with exit_status 5');
  t.equal(delEv?.payload?.pid, initPid, '/tasks/delete with the init pid');
  expectCode(t, await cd.ctr(['container', 'delete', c]), 0, 'container delete');
  t.equal(events.forContainer(c).filter(e => e.topic === '/tasks/exit').length, 3, 'still three /tasks/exit in the end');
  t.same(await taskList(cd), [], 'no tasks left');
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  scenario(t, `containerd restart after ${signal}: tasks survive, the exit while it was down arrives`, async (t, { cd, runtime, id, ids }) => {
    useAltShimRoot(t, cd, runtime);
    try {
      await restartScenario(t, cd, runtime, id, signal);
    } finally {
      if (!cd.running) await cd.restart();
      await removeAll(cd, ids);
    }
  });
}

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  scenario(t, `containerd restart after ${signal}: a backlog of exits in one shim arrives once each, in order`, async (t, { cd, runtime, id, ids }) => {
    useAltShimRoot(t, cd, runtime);
    try {
      await backlogScenario(t, cd, runtime, id, signal);
    } finally {
      if (!cd.running) await cd.restart();
      await removeAll(cd, ids);
    }
  });
}
