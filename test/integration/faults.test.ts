// Fault injection: a shim SIGKILLed under its containers (containerd's `delete` must clean up
// after it), runc failing in every way a caller can make it fail (missing binary, bad bundle, bad
// spec, missing command), and bundles on a full or read-only file system. Every failure must be a
// clear error (an exact ttrpc status code and a message naming the cause) that leaves nothing
// behind, and the shim must go on serving.
//
// containerd restarts (tasks survive, the event backlog arrives in order) are in
// containerd-restart.test.ts.
//
// RUNCTS_TEST_SHIM_ROOT=<dir> runs the containerd scenarios' runcts against another runcts tree (a
// deliberately broken copy: docs/testing.md, the faults row).
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import {
  BUSYBOX_IMAGE, Containerd, CtrEvent, EventStream, RUNTIME_RUNCTS, expectCode,
  isAlive, mountsUnder, repoRoot, scenario, waitFor, type ScenarioContext,
} from './harness';

const SHIM_BINARY = 'containerd-shim-runcts-v2';
/** shim/runc/manager.ts NAMESPACE_GROUP. */
const NS_GROUP = '.runcts-namespace';

// ---------------------------------------------------------------------------------------------
// Through containerd: the shim SIGKILLed while its containers run.

interface TaskRow { id: string; pid: number; status: string }

async function taskList(cd: Containerd): Promise<TaskRow[]> {
  const r = await cd.ctr(['task', 'ls']);
  return r.stdout.split('\n').slice(1).map(l => l.trim().split(/\s+/)).filter(f => f.length === 3)
    .map(([id, pid, status]) => ({ id: id!, pid: Number(pid), status: status! }));
}

async function execPid(cd: Containerd, id: string, execId: string): Promise<number> {
  const r = await cd.ctr(['task', 'ps', id]);
  for (const l of r.stdout.split('\n').slice(1)) {
    const [pid, ...info] = l.trim().split(/\s+/);
    if (new RegExp(`ExecID:${execId}\\b`).test(info.join(' '))) return Number(pid);
  }
  return 0;
}

/**
 * containerd looks the shim up in its PATH (cd.binDir first) at every call: put a wrapper there
 * that runs the real shim (for runcts, RUNCTS_TEST_SHIM_ROOT's if set: a mutant tree) and, after
 * each `delete`, records its exit status and whether the bundle's rootfs is still mounted (as
 * containerd's own bundle cleanup unmounts it too right after, only this shows what the shim's
 * `delete` itself did). Returns the record file: lines `<id> rc=<n> mounted=<n>`.
 */
function wrapShim(t: Test, cd: Containerd, runtime: string): string {
  const name = runtime === RUNTIME_RUNCTS ? SHIM_BINARY : 'containerd-shim-runc-v2';
  const alt = process.env.RUNCTS_TEST_SHIM_ROOT;
  const real = runtime === RUNTIME_RUNCTS ? path.join(alt ?? repoRoot(), 'bin', SHIM_BINARY) : '/usr/bin/containerd-shim-runc-v2';
  if (alt && runtime === RUNTIME_RUNCTS) t.comment(`shim binary: ${real}`);
  const record = path.join(cd.dir, 'deletes.log');
  const wrapper = path.join(cd.binDir, name);
  fs.rmSync(wrapper, { force: true });
  fs.writeFileSync(wrapper, [
    '#!/bin/bash',
    'if [ "${!#}" != delete ]; then exec ' + real + ' "$@"; fi',
    'id= bundle=$PWD prev=',
    'for a; do case $prev in -id) id=$a ;; -bundle) bundle=$a ;; esac; prev=$a; done',
    real + ' "$@"; rc=$?',
    'echo "$id rc=$rc mounted=$(grep -c " $bundle/rootfs " /proc/self/mountinfo)" >> ' + record,
    'exit $rc',
    '',
  ].join('\n'), { mode: 0o755 });
  return record;
}

/**
 * `ids` run (with an exec -d `keep` in the first), then every shim of cd is SIGKILLed. containerd
 * sees the connections close and runs the shim binary's `delete` for each task; afterwards no
 * container process, rootfs mount or shim socket may be left, and a user's `task delete` /
 * `container delete` leave nothing for the scenario's leak check.
 */
async function killShimsScenario(t: Test, ctx: ScenarioContext, ids: string[], opts: { extraRunArgs?: string[]; expectShims: number; sockets: string[] }): Promise<void> {
  const { cd, runtime } = ctx;
  const deletes = wrapShim(t, cd, runtime);
  for (const id of ids) {
    expectCode(t, await cd.ctr(['run', '-d', '--runtime', runtime, ...(opts.extraRunArgs ?? []), BUSYBOX_IMAGE, id, 'sleep', '1000']), 0, `run -d ${id}`);
  }
  expectCode(t, await cd.ctr(['task', 'exec', '-d', '--exec-id', 'keep', ids[0]!, 'sleep', '999']), 0, 'exec -d into the first');
  const rows = await taskList(cd);
  const pids = new Map(ids.map(id => [id, rows.find(r => r.id === id)?.pid ?? 0]));
  const exec = await execPid(cd, ids[0]!, 'keep');
  if (!t.ok([...pids.values()].every(p => p > 0) && exec > 0, 'every task RUNNING with a pid, the exec too', { rows })) return;
  t.ok(rows.every(r => !ids.includes(r.id) || r.status === 'RUNNING'), 'all RUNNING');
  for (const s of opts.sockets) t.ok(fs.existsSync(s), `shim socket there before: ${s}`);
  for (const id of ids) t.ok(mountsUnder(path.join(cd.taskStateDir(), id)).length > 0, `${id}: rootfs mounted`);

  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  const shims = cd.shims();
  t.equal(shims.length, opts.expectShims, `${opts.expectShims} shim process(es)`, { shims });
  for (const p of shims) process.kill(p.pid, 'SIGKILL');
  t.ok(await waitFor(() => shims.every(p => !isAlive(p.pid)), { timeoutMs: 5_000 }), 'shims killed');

  // containerd: cleanupAfterDeadShim runs `<shim> delete`, then publishes /tasks/exit and /tasks/delete
  // with the DeleteResponse's pid and status (the shim's delete reports 128+SIGKILL).
  for (const id of ids) {
    const exit = await events.waitFor(e => e.topic === '/tasks/exit' && e.payload?.container_id === id, 30_000);
    t.ok(exit, `${id}: /tasks/exit`, { events: events.events.map(e => e.raw) });
    t.equal(exit?.payload?.exit_status, 137, `${id}: exit_status 137`);
    t.equal(exit?.payload?.pid, pids.get(id), `${id}: with the init's pid`);
    const del = await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === id, 10_000);
    t.equal(del?.payload?.exit_status, 137, `${id}: /tasks/delete with exit_status 137`);
  }
  for (const id of ids) {
    t.ok(await waitFor(() => !isAlive(pids.get(id)!), { timeoutMs: 10_000 }), `${id}: container process gone`);
  }
  t.ok(await waitFor(() => !isAlive(exec), { timeoutMs: 10_000 }), 'the exec is gone too');
  for (const id of ids) t.same(mountsUnder(path.join(cd.taskStateDir(), id)), [], `${id}: no rootfs mount left`);
  const ran = fs.existsSync(deletes) ? fs.readFileSync(deletes, 'utf8').split('\n').filter(Boolean) : [];
  for (const id of ids) {
    t.same(ran.filter(l => l.startsWith(`${id} `)), [`${id} rc=0 mounted=0`], `${id}: containerd ran the shim's delete once; it exited 0 and had unmounted the rootfs itself`);
  }
  for (const s of opts.sockets) {
    if (runtime === RUNTIME_RUNCTS) {
      t.notOk(fs.existsSync(s), `shim socket removed: ${s}`);
    } else if (fs.existsSync(s)) {
      // containerd 1.6's Go shim: its `delete` does not remove the dead shim's socket (only a shim
      // that exits normally does). Reported, and cleared so that the leak check judges the rest.
      t.comment(`Go shim left its dead socket behind: ${s}`);
      fs.rmSync(s, { force: true });
    }
  }
  t.same(cd.shims(), [], 'no shim process left');

  // containerd 1.6 keeps the task in its list until someone deletes it; see what a user sees.
  const after = await taskList(cd);
  t.comment(`task ls after the shims were killed: ${JSON.stringify(after)}`);
  for (const id of ids) {
    const row = after.find(r => r.id === id);
    t.ok(!row || row.status === 'STOPPED' || row.status === 'UNKNOWN', `${id}: task gone, STOPPED or UNKNOWN (${row?.status ?? 'gone'})`);
  }
  // Exactly one exit per container: containerd's own, nothing from a half-dead shim.
  for (const id of ids) {
    const exits = events.forContainer(id).filter((e: CtrEvent) => e.topic === '/tasks/exit' && e.payload?.id === id);
    t.equal(exits.length, 1, `${id}: one /tasks/exit for the init`);
  }

  // What a user does: delete the task (whatever is left of it) and the container.
  for (const id of ids) {
    const del = await cd.ctr(['task', 'delete', id]);
    t.comment(`task delete ${id}: code ${del.code} ${del.stderr.trim()}`);
    expectCode(t, await cd.ctr(['container', 'delete', id]), 0, `container delete ${id}`);
  }
  t.same(await taskList(cd), [], 'no task left');
}

scenario(t, 'shim SIGKILLed under two containers and an exec: containerd\'s delete leaves no process, mount or socket', async (t, ctx) => {
  const ids = [ctx.id('kill-a'), ctx.id('kill-b')];
  await killShimsScenario(t, ctx, ids, { expectShims: 2, sockets: ids.map(id => ctx.cd.shimSocketPath(id)) });
}, { timeoutMs: 180_000 });

scenario(t, 'grouping: the one namespace daemon SIGKILLed under three containers', async (t, ctx) => {
  const config = path.join(ctx.cd.dir, 'grouped.toml');
  fs.writeFileSync(config, 'ShimGrouping = "namespace"\n');
  ctx.ids.push(NS_GROUP); // the leak check looks for its socket too
  const ids = [ctx.id('grp-a'), ctx.id('grp-b'), ctx.id('grp-c')];
  await killShimsScenario(t, ctx, ids, { expectShims: 1, extraRunArgs: ['--runtime-config-path', config], sockets: [ctx.cd.shimSocketPath(NS_GROUP)] });
}, { runtimes: [RUNTIME_RUNCTS], timeoutMs: 180_000, containerd: { env: { RUNCTS_SHIM_LINGER_MS: '200' } } });
