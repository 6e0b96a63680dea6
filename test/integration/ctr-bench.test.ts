// Informative benchmark: wall time of `ctr run --rm <image> <id> true`, median of 5, for each
// runtime side by side. Printed as comments; never asserted on.
import t from 'tap';
import { BUSYBOX_IMAGE, describeResult, scenario } from './harness';

const RUNS = 5;
const results = new Map<string, number[]>();

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

scenario(t, `ctr run --rm true: wall time, median of ${RUNS}`, async (t, { cd, runtime, id }) => {
  // One warm-up run (page cache, first shim start), not counted.
  const warm = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('warm'), 'true']);
  if (!t.equal(warm.code, 0, 'warm-up run succeeds', { result: describeResult(warm) })) return;
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('bench'), 'true']);
    if (!t.equal(r.code, 0, `run ${i + 1} succeeds`, { result: describeResult(r) })) return;
    times.push(r.durationMs);
  }
  results.set(runtime, times);
  t.comment(`${runtime}: median ${median(times).toFixed(1)} ms (runs: ${times.map(x => x.toFixed(1)).join(', ')})`);
});

t.test('summary', async t => {
  const lines = [...results].map(([rt, xs]) => `${rt.padEnd(26)} ${median(xs).toFixed(1).padStart(9)} ms`);
  t.comment(`ctr run --rm true, median wall time of ${RUNS}:\n${lines.join('\n') || '(no runtime completed)'}`);
  t.pass('benchmark printed (informative only)');
});
