// One shim, two containers (one pod, as CRI groups them); the first one's runtime (BinaryName: a
// wrapper around runc) hangs on `kill`. The other container's State, Stats, Pids and Exec still
// answer within a second while that Kill is stuck; the stuck call ends at the runc deadline with
// DeadlineExceeded naming the runc command, the hung process is gone, and the first container can
// still be driven afterwards.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { Code } from '../../shim/framework/ttrpc';
import { DirectShims, STATUS, alive, connectShim, execSpec, expectStatus, optionsAny, retireShim, waitGone } from './harness';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

/** The runc deadline the shim is started with (RUNCTS_RUNC_DEADLINE_MS; 60 s by default). */
const DEADLINE_MS = 3000;

t.test('a runc call that hangs for one container blocks nothing of another; it ends at its deadline', { timeout: 120_000 }, async (t) => {
  const marker = path.join(shims.root, 'hung-runc.pid');
  const wrapper = path.join(shims.root, 'runc-hangs-on-kill');
  // `kill` never returns (the wrapper becomes a sleep, so the deadline's SIGKILL ends it all).
  fs.writeFileSync(wrapper, `#!/bin/sh\nfor a in "$@"; do [ "$a" = kill ] && { echo $$ > ${marker}; exec sleep 1000; }; done\nexec runc "$@"\n`, { mode: 0o755 });
  const events = shims.events('iso');
  await events.listen();
  t.teardown(() => events.close());
  const group = { 'io.kubernetes.cri.sandbox-id': `iso-${process.pid}` };
  const stuck = 'stuck';
  const other = 'other';
  const bStuck = shims.bundle(stuck, ['sleep', '1000'], { annotations: group });
  const bOther = shims.bundle(other, ['sleep', '1000'], { annotations: group });
  const env = { RUNCTS_RUNC_DEADLINE_MS: String(DEADLINE_MS) };
  const first = await shims.start(bStuck, stuck, events.socket, undefined, env);
  t.equal(first.code, 0, 'start (stuck)');
  const second = await shims.start(bOther, other, events.socket, undefined, env);
  t.equal(second.stdout, first.stdout, 'one shim for the pod');
  const shim = await connectShim(first.stdout);
  t.teardown(() => shim.client.close());
  await shim.call('Create', shims.createReq(stuck, bStuck, { options: optionsAny({ binary_name: wrapper }) }));
  await shim.call('Start', { id: stuck, exec_id: '' });
  await shim.call('Create', shims.createReq(other, bOther));
  await shim.call('Start', { id: other, exec_id: '' });

  const began = Date.now();
  const hung = shim.call('Kill', { id: stuck, exec_id: '', signal: 15, all: false }, 60_000).then(
    () => ({ ok: true as const, ms: Date.now() - began }),
    (err: Error) => ({ ok: false as const, err, ms: Date.now() - began }),
  );
  const deadline = Date.now() + 5000;
  while (!fs.existsSync(marker) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const hungPid = Number(fs.readFileSync(marker, 'utf8'));
  t.ok(alive(hungPid), 'the stuck container\'s runc kill hangs');

  // Meanwhile the other container: every call answers within a second.
  const timings: Array<[string, number]> = [];
  const timed = async (what: string, p: Promise<unknown>) => {
    const s = Date.now();
    const v = await p;
    timings.push([what, Date.now() - s]);
    return v;
  };
  for (let i = 0; i < 3; i++) {
    const st = await timed('State', shim.call('State', { id: other, exec_id: '' })) as { status: number };
    t.equal(st.status, STATUS.RUNNING);
    await timed('Stats', shim.call('Stats', { id: other }));
    await timed('Pids', shim.call('Pids', { id: other }));
    const execId = `e${i}`;
    await timed('Exec', shim.call('Exec', { id: other, exec_id: execId, terminal: false, stdin: '', stdout: '', stderr: '', spec: execSpec(['true']) }));
    const waiting = shim.call('Wait', { id: other, exec_id: execId });
    await timed('Start (exec)', shim.call('Start', { id: other, exec_id: execId }));
    t.equal(((await timed('Wait (exec)', waiting)) as { exit_status: number }).exit_status, 0, `exec ${execId} ran`);
    await timed('Delete (exec)', shim.call('Delete', { id: other, exec_id: execId }));
    // The stuck container's own reads need no runc either.
    await timed('State (stuck)', shim.call('State', { id: stuck, exec_id: '' }));
  }
  const worst = Math.max(...timings.map(([, ms]) => ms));
  t.comment(`while one runc hung: ${timings.length} calls, worst ${worst} ms (${timings.map(([w, ms]) => `${w} ${ms}`).join(', ')})`);
  t.ok(worst < 1000, `every call answered within a second (worst ${worst} ms)`);
  t.ok(alive(hungPid) && Date.now() - began < DEADLINE_MS, 'all of that while the runc call was still hanging');

  const r = await hung;
  t.notOk(r.ok, 'the stuck Kill fails');
  if (!r.ok) {
    await expectStatus(t, Promise.reject(r.err), Code.DeadlineExceeded, 'at the runc deadline');
    t.match(r.err.message, /runc kill did not finish within 3000 ms/, 'naming the runc command and its deadline');
  }
  t.ok(r.ms >= DEADLINE_MS - 100 && r.ms < DEADLINE_MS + 2000, `after the deadline (${r.ms} ms)`);
  t.ok(await waitGone(hungPid, 2000), 'the hung runtime process was killed');
  t.equal((await shim.call('State', { id: stuck, exec_id: '' })).status, STATUS.RUNNING, 'the stuck container is still there, RUNNING');

  // Cleanup: runc directly for the stuck container (its wrapper would hang again on kill).
  fs.writeFileSync(wrapper, '#!/bin/sh\nexec runc "$@"\n', { mode: 0o755 });
  t.ok(await retireShim(shim, [stuck, other]), 'shim exits');
});

t.test('nothing is left behind', async (t) => {
  await shims.assertNothingLeft(t, 1);
});
