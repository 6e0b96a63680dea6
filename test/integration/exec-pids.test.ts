// Pids right after an exec's Start: the exec's pid is listed, with its exec id, every time. runcts
// answers Pids from the container's cgroup (no runc ps), but the exec's place in the cgroup is
// written by the runtime, a producer of its own: runc 1.1 joins it before it writes the pid file,
// a wrapper or another runtime need not. Driven directly (harness/direct.ts), runcts only: first
// plain runc (100 execs, 4 in flight), then a BinaryName wrapper around runc whose exec'd process
// joins the container's cgroup only after `exec --detach` returned (1 s later).
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { messageType } from '../../shim/framework/proto';
import { DirectShims, alive, connectShim, encodeAny, execSpec, optionsAny, retireShim, type DirectShim } from './harness';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

/** How long the wrapper's exec'd process stays outside the container's cgroup. */
const LATE_JOIN_S = 1;

/**
 * runc, except that after a successful `exec` the new process leaves every v1 hierarchy for its
 * root and comes back LATE_JOIN_S later: the Start answer (runc's exit and pid file) then comes
 * before the cgroup lists the process, as with a runtime that orders the two the other way.
 */
function lateJoiningRuntime(): string {
  const file = path.join(shims.root, 'runc-late-cgroup-join');
  fs.writeFileSync(file, `#!/bin/sh
runc "$@" || exit $?
prev=; pidfile=; isexec=
for a in "$@"; do
  [ "$prev" = --pid-file ] && pidfile=$a
  [ "$a" = exec ] && isexec=1
  prev=$a
done
[ -n "$isexec" ] && [ -n "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
back=
while IFS=: read -r _ ctrls dir; do
  [ -n "$ctrls" ] || continue
  root=/sys/fs/cgroup/\${ctrls#name=}
  [ -d "$root" ] || continue
  echo "$pid" > "$root/cgroup.procs" && back="$back $root$dir"
done < /proc/$pid/cgroup
( sleep ${LATE_JOIN_S}; for d in $back; do echo "$pid" > "$d/cgroup.procs"; done ) </dev/null >/dev/null 2>&1 &
`, { mode: 0o755 });
  return file;
}

/** Whether pid is in container id's cgroup (runc's default cgroupsPath is /<id>) in the pids hierarchy. */
function inContainerCgroup(pid: number, id: string): boolean {
  return fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').some((l) => /^\d+:pids:/.test(l) && l.endsWith(`:/${id}`));
}

const details = messageType('containerd.runc.v1.ProcessDetails');

/** Pids as { pid: exec id ('' for a pid without details) }. */
async function pidsOf(shim: DirectShim, id: string): Promise<Map<number, string>> {
  const r = await shim.call('Pids', { id }) as { processes: Array<{ pid: number; info?: { value: Buffer } | null }> };
  return new Map(r.processes.map((p) => [p.pid, p.info ? (details.decode(p.info.value) as unknown as { exec_id: string }).exec_id : '']));
}

async function startContainer(t: Test, id: string, binaryName: string): Promise<DirectShim> {
  const events = shims.events(id);
  await events.listen();
  t.teardown(() => events.close());
  const bundle = shims.bundle(id, ['sleep', '100000']);
  const options = optionsAny({ binary_name: binaryName });
  const started = await shims.start(bundle, id, events.socket, encodeAny(options));
  if (started.code !== 0) throw new Error(`start failed (${started.code}): ${started.stderr}`);
  const shim = await connectShim(started.stdout);
  t.teardown(() => shim.client.close());
  await shim.call('Create', shims.createReq(id, bundle, { options }));
  await shim.call('Start', { id, exec_id: '' });
  return shim;
}

/** Exec `sleep`, Start it, and call Pids as soon as Start answered. */
async function execThenPids(shim: DirectShim, id: string, execId: string): Promise<{ pid: number; pids: Map<number, string> }> {
  await shim.call('Exec', { id, exec_id: execId, terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['sleep', '100000']) });
  const { pid } = await shim.call('Start', { id, exec_id: execId }) as { pid: number };
  return { pid, pids: await pidsOf(shim, id) };
}

async function endExec(shim: DirectShim, id: string, execId: string): Promise<void> {
  await shim.call('Kill', { id, exec_id: execId, signal: 9 });
  await shim.call('Wait', { id, exec_id: execId });
  await shim.call('Delete', { id, exec_id: execId });
}

t.test('plain runc: 100 execs, 4 in flight, each listed by the Pids right after its Start', async (t) => {
  const id = 'pids-runc';
  const shim = await startContainer(t, id, 'runc');
  const { pid: initPid } = await shim.call('State', { id, exec_id: '' }) as { pid: number };
  const misses: string[] = [];
  const loop = async (k: number) => {
    for (let i = 0; i < 25; i++) {
      const execId = `e${k}-${i}`;
      const { pid, pids } = await execThenPids(shim, id, execId);
      if (pids.get(pid) !== execId || !pids.has(initPid)) misses.push(`${execId} (pid ${pid}): ${JSON.stringify([...pids])}`);
      await endExec(shim, id, execId);
    }
  };
  await Promise.all([0, 1, 2, 3].map(loop));
  t.same(misses, [], 'every Pids listed the init and the exec just started, with its exec id');
  t.ok(await retireShim(shim, [id]), 'shim gone');
});

t.test(`a runtime whose exec'd process joins the cgroup ${LATE_JOIN_S} s after exec returned: Pids lists it all the same`, async (t) => {
  const id = 'pids-late';
  const shim = await startContainer(t, id, lateJoiningRuntime());
  const { pid: initPid } = await shim.call('State', { id, exec_id: '' }) as { pid: number };
  for (let i = 0; i < 5; i++) {
    const execId = `late${i}`;
    const { pid, pids } = await execThenPids(shim, id, execId);
    // The window is open: the test would prove nothing otherwise.
    t.notOk(inContainerCgroup(pid, id), `${execId}: not in the container's cgroup when Start answered`);
    t.same([...pids], [[initPid, ''], [pid, execId]].sort((a, b) => (a[0] as number) - (b[0] as number)), `${execId}: Pids lists the init and the exec, with its exec id`);
    const end = Date.now() + 10_000;
    while (!inContainerCgroup(pid, id) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    t.ok(inContainerCgroup(pid, id), `${execId}: joined the cgroup later`);
    t.same([...(await pidsOf(shim, id)).keys()], [initPid, pid].sort((a, b) => a - b), `${execId}: listed once after it joined`);
    await endExec(shim, id, execId);
    t.notOk(alive(pid), `${execId}: gone`);
    t.same([...(await pidsOf(shim, id)).keys()], [initPid], `${execId}: not listed after its exit`);
  }
  t.ok(await retireShim(shim, [id]), 'shim gone');
});

t.test('nothing is left behind: no shim process, socket, mount or cgroup of these tests', async (t) => {
  await shims.assertNothingLeft(t, 2);
  for (const id of ['pids-runc', 'pids-late']) {
    const left = fs.readdirSync('/sys/fs/cgroup').filter((h) => fs.existsSync(path.join('/sys/fs/cgroup', h, id)));
    t.same(left, [], `no cgroup /${id} left`);
    t.notOk(fs.existsSync(path.join('/run/containerd/runc/shimtest', id)), `no runc state for ${id}`);
  }
});
