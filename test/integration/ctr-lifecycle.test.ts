// Issue "runcts runs containers for a real containerd": a detached task's life through ctr
// (run -d, task ls/ps/kill/delete, container delete), and the error cases around it.
import t from 'tap';
import type { Test } from 'tap';
import { BUSYBOX_IMAGE, Containerd, expectCode, readProcess, RUNTIME_RUNC, RUNTIME_RUNCTS, scenario, waitFor, taskList, taskRow } from './harness';

/** The shim binary each runtime must resolve to (the runcts one is a node script). */
function shimMatches(runtime: string, argv: string[]): boolean {
  const joined = argv.join(' ');
  if (runtime === RUNTIME_RUNC) return /containerd-shim-runc-v2/.test(argv[0] ?? '');
  if (runtime === RUNTIME_RUNCTS) return /containerd-shim-runcts-v2|dist\/shim\/main\.js/.test(joined);
  return true;
}

/** Start `sleep 1000` detached; returns its pid, or undefined (after failing t) when it did not run. */
async function runSleeper(t: Test, cd: Containerd, runtime: string, id: string): Promise<number | undefined> {
  const r = await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, id, 'sleep', '1000']);
  if (!expectCode(t, r, 0, 'ctr run -d')) return undefined;
  const row = await taskRow(cd, id);
  if (!t.ok(row, 'task listed by ctr task ls', { tasks: await taskList(cd) })) return undefined;
  t.equal(row!.status, 'RUNNING', 'status RUNNING');
  t.ok(row!.pid > 0, 'task ls shows a pid');
  return row!.pid;
}

/** SIGKILL, wait for STOPPED, delete task and container (for cleanup after other checks). */
async function killAndRemove(t: Test, cd: Containerd, id: string): Promise<void> {
  await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  await waitFor(async () => (await taskRow(cd, id))?.status === 'STOPPED', { timeoutMs: 15_000, intervalMs: 100 });
  expectCode(t, await cd.ctr(['task', 'delete', id]), 0, 'task delete');
  expectCode(t, await cd.ctr(['container', 'delete', id]), 0, 'container delete');
}

scenario(t, 'ctr run -d, task ls/ps/kill/delete, container delete', async (t, { cd, runtime, id }) => {
  const cid = id('life');
  const pid = await runSleeper(t, cd, runtime, cid);
  if (pid === undefined) return;

  const shims = cd.shims();
  t.equal(shims.length, 1, 'one shim for the container');
  t.ok(shims.every(s => shimMatches(runtime, s.argv)), `the shim is ${runtime}'s binary`, { shims: shims.map(s => s.argv.join(' ')) });

  const ps = await cd.ctr(['task', 'ps', cid]);
  expectCode(t, ps, 0, 'ctr task ps');
  const psPids = ps.stdout.split('\n').slice(1).map(l => Number(l.trim().split(/\s+/)[0])).filter(n => n > 0);
  t.same(psPids, [pid], 'task ps lists the init pid (and nothing else)');
  const proc = readProcess(pid);
  t.ok(proc && proc.state !== 'Z', 'the pid is a live process');
  t.same(proc?.argv, ['sleep', '1000'], 'running the container command');

  const kill = await cd.ctr(['task', 'kill', '-s', 'SIGKILL', cid]);
  expectCode(t, kill, 0, 'ctr task kill -s SIGKILL');
  const stopped = await waitFor(async () => (await taskRow(cd, cid))?.status === 'STOPPED', { timeoutMs: 15_000, intervalMs: 100 });
  if (!t.ok(stopped, 'task reaches STOPPED', { tasks: await taskList(cd) })) return;
  t.notOk(readProcess(pid), 'the container process is gone (reaped, not a zombie)');

  // Killing a process that already exited: the Go shim says "process already finished: not found".
  const again = await cd.ctr(['task', 'kill', '-s', 'SIGKILL', cid]);
  t.not(again.code, 0, 'kill of an exited task fails');
  t.match(again.stderr, /not found/, 'with a not-found error');

  const del = await cd.ctr(['task', 'delete', cid]);
  expectCode(t, del, 0, 'ctr task delete');
  // ctr 1.6 reports a non-zero exit status as a warning on stderr and exits 0.
  t.match(del.stderr, new RegExp(`task ${cid} exit with non-zero exit code 137`), 'exit status 137 (SIGKILL) reported');
  t.notOk((await taskList(cd)).some(r => r.id === cid), 'task gone from task ls');

  expectCode(t, await cd.ctr(['container', 'delete', cid]), 0, 'ctr container delete');
});

scenario(t, 'error cases', async (t, { cd, runtime, id }) => {
  const missing = await cd.ctr(['task', 'kill', 'nonexistent']);
  t.not(missing.code, 0, 'kill of a nonexistent task fails');
  t.match(missing.stderr, new RegExp(`container "nonexistent" in namespace "${cd.namespace}": not found`), 'containerd: not found');

  const cid = id('err');
  const pid = await runSleeper(t, cd, runtime, cid);
  if (pid === undefined) return;

  const start = await cd.ctr(['task', 'start', cid]);
  t.not(start.code, 0, 'start of a running task fails');
  t.match(start.stderr, new RegExp(`task ${cid}: already exists`), 'containerd: already exists');

  const del = await cd.ctr(['task', 'delete', cid]);
  t.not(del.code, 0, 'delete of a running task fails');
  t.match(del.stderr, /task must be stopped before deletion: running: failed precondition/, 'containerd: failed precondition');
  t.equal((await taskRow(cd, cid))?.status, 'RUNNING', 'task still running after the refused operations');
  t.ok(readProcess(pid), 'its process too');

  await killAndRemove(t, cd, cid);

  // A command that does not exist in the rootfs: runc create fails, the shim reports it.
  const bad = id('bad-cmd');
  const r = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, bad, '/nonexistent']);
  t.not(r.code, 0, 'ctr run of /nonexistent fails');
  t.notOk(r.timedOut, 'and does not hang');
  // Go shim: `ctr: failed to create shim task: OCI runtime create failed: runc create failed:
  // unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown`
  t.match(r.stderr, /\/nonexistent.*no such file or directory/, "runc's error reaches ctr");
  const containers = await cd.ctrOk(['containers', 'ls', '-q']);
  t.notOk(containers.stdout.split('\n').includes(bad), 'no container record left');
  const snaps = await cd.ctrOk(['snapshots', 'ls']);
  t.notOk(snaps.stdout.split('\n').some(l => l.split(/\s+/)[0] === bad), 'no snapshot left');

  // A rootfs that does not exist (bad bundle): same.
  const badRoot = id('bad-rootfs');
  const r2 = await cd.ctr(['run', '--rm', '--runtime', runtime, '--rootfs', `/tmp/rc-does-not-exist-${process.pid}`, badRoot, '/bin/true']);
  t.not(r2.code, 0, 'ctr run --rootfs <missing dir> fails');
  t.notOk(r2.timedOut, 'and does not hang');
  // Go shim: `... runc create failed: invalid rootfs: stat /tmp/...: no such file or directory: unknown`
  t.match(r2.stderr, /rc-does-not-exist.*no such file or directory/, "runc's error reaches ctr");
});
