// Liveness probes at scale (issue "production behaviour", cheap exec probes): 5,000 `exec true`
// in one container of one shim, started as containerd starts it (startup snapshot): after the
// warm-up the shim's RSS grows by less than 2 MiB, no fd, zombie or per-exec file is left, every
// exit is delivered once. `make soak` runs the same with 100,000 execs. Counts for iterating:
// RUNCTS_PROBE_SOAK_EXECS, RUNCTS_PROBE_SOAK_RSS_BOUND_KIB.
import t from 'tap';
import { envCount, soak } from './soak';

t.test('probe soak: 5,000 exec true through one shim, RSS +<2 MiB after the warm-up', { timeout: 900_000 }, async (t) => {
  const figures = await soak(t, {
    lifecycles: 0,
    execs: envCount('RUNCTS_PROBE_SOAK_EXECS', 5000),
    execConcurrency: 4,
    rounds: 10,
    // V8 sizes its heap over the first couple of thousand execs (docs/testing.md): the second half is measured.
    warmupRounds: 5,
    rssBoundKiB: envCount('RUNCTS_PROBE_SOAK_RSS_BOUND_KIB', 2048),
    production: true,
  });
  t.ok(figures.snapshot, 'the shim ran from the startup snapshot, as under containerd');
});
