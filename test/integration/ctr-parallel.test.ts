// Issue "runcts runs containers for a real containerd": 20 `ctr run --rm` at once, each with
// its own shim, must all complete with their own output.
import t from 'tap';
import { BUSYBOX_IMAGE, describeResult, RUNTIME_RUNC, scenario } from './harness';

const N = 20;

scenario(t, `${N} containers in parallel`, async (t, { cd, runtime, id }) => {
  const ids = Array.from({ length: N }, () => id('par'));
  const started = Date.now();
  const results = await Promise.all(
    ids.map(cid => cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, cid, 'sh', '-c', `echo ${cid}; echo ${cid}-err >&2`], { timeoutMs: 120_000 })),
  );
  t.comment(`${N} parallel ctr run --rm with ${runtime}: ${Date.now() - started} ms`);
  const all = results.map((r, i) => ({ r, id: ids[i]! }));
  t.equal(results.filter(r => r.timedOut).length, 0, 'none hung');
  const failed = all.filter(({ r }) => r.code !== 0);
  t.equal(failed.length, 0, `all ${N} exit 0`, { failures: failed.map(({ r }) => describeResult(r)) });
  // Never another container's output.
  const crossed = all.filter(({ r, id }) => !['', `${id}\n`].includes(r.stdout) || !['', `${id}-err\n`].includes(r.stderr));
  t.equal(crossed.length, 0, 'no container sees output that is not its own', { failures: crossed.map(({ r }) => describeResult(r)) });
  const lost = all.filter(({ r, id }) => r.code === 0 && (r.stdout !== `${id}\n` || r.stderr !== `${id}-err\n`));
  if (runtime === RUNTIME_RUNC) {
    // containerd 1.6's Go shim loses the output of a short-lived process now and then when the
    // machine is loaded (measured here: 2 in 160 under CPU load, 0 in 160 idle; upstream:
    // concourse/concourse#6775). Reported, not asserted: runcts must do better (DESIGN lesson 4).
    if (lost.length) t.comment(`${runtime} lost output of ${lost.length} container(s): ${lost.map(l => l.id).join(', ')}`);
  } else {
    t.equal(lost.length, 0, `all ${N} with their complete stdout and stderr`, { failures: lost.map(({ r }) => describeResult(r)) });
  }
}, { timeoutMs: 300_000 });
