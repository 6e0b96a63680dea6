// Issue "runcts runs containers for a real containerd": 20 `ctr run --rm` at once, each with
// its own shim, must all complete with their own output.
import t from 'tap';
import { BUSYBOX_IMAGE, describeResult, scenario } from './harness';

const N = 20;

scenario(t, `${N} containers in parallel`, async (t, { cd, runtime, id }) => {
  const ids = Array.from({ length: N }, () => id('par'));
  const started = Date.now();
  const results = await Promise.all(
    ids.map(cid => cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, cid, 'sh', '-c', `echo ${cid}; echo ${cid}-err >&2`], { timeoutMs: 120_000 })),
  );
  t.comment(`${N} parallel ctr run --rm with ${runtime}: ${Date.now() - started} ms`);
  const bad = results.map((r, i) => ({ r, id: ids[i]! })).filter(({ r, id }) => r.code !== 0 || r.stdout !== `${id}\n` || r.stderr !== `${id}-err\n`);
  t.equal(bad.length, 0, `all ${N} exit 0 with their own stdout and stderr`, { failures: bad.map(({ r }) => describeResult(r)) });
  t.equal(results.filter(r => r.timedOut).length, 0, 'none hung');
}, { timeoutMs: 300_000 });
