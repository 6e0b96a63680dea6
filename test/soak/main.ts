// `make soak`: the full load and soak run (test/integration/soak.ts) as a tap test run by node;
// exits non-zero when an assertion fails. Counts and bounds from the environment:
//   RUNCTS_SOAK_LIFECYCLES (1000)  RUNCTS_SOAK_EXECS (10000)
//   RUNCTS_SOAK_ROUNDS (10 checkpoints)  RUNCTS_SOAK_WARMUP_ROUNDS (3 of them)
//   RUNCTS_SOAK_LIFECYCLE_CONCURRENCY (3)  RUNCTS_SOAK_EXEC_CONCURRENCY (4)
//   RUNCTS_SOAK_RSS_BOUND_KIB (4096)  RUNCTS_SOAK_EXEC_ARGS (JSON argv, default ["true"])
//   RUNCTS_SOAK_HEAP_SNAPSHOTS=<dir> with NODE_OPTIONS=--heapsnapshot-signal=SIGUSR2: the shim's
//   heap at every checkpoint, for diagnosis (the snapshots themselves inflate the RSS figures)
import t from 'tap';
import { envCount, soak } from '../integration/soak';

if (process.env.TAP === '1' && !process.env.RUNCTS_SOAK) {
  // A bare `tap` run found it: the soak runs only when asked for.
  console.log('1..0 # skip: the full soak runs with make soak (or RUNCTS_SOAK=1)');
  process.exit(0);
}

const only = process.env.RUNCTS_SOAK_ONLY; // "soak" or "probes": one of the two runs
const lifecycles = envCount('RUNCTS_SOAK_LIFECYCLES', 1000);
const execs = envCount('RUNCTS_SOAK_EXECS', 10_000);
const probeExecs = envCount('RUNCTS_PROBE_SOAK_EXECS', 100_000);
// Generous: ~100 ms per lifecycle and ~35 ms per exec here, run partly in parallel.
const timeout = 120_000 + lifecycles * 500 + execs * 200;
const probeTimeout = 120_000 + probeExecs * 100;

// A tap test run by node has a 30 s timeout of its own.
t.setTimeout((only === 'probes' ? 0 : timeout) + (only === 'soak' ? 0 : probeTimeout) + 60_000);
if (only !== 'probes') {
  t.test(`soak: ${lifecycles} lifecycles and ${execs} execs through one shim`, { timeout }, async (t) => {
    await soak(t, {
      lifecycles,
      execs,
      rounds: envCount('RUNCTS_SOAK_ROUNDS', 10),
      warmupRounds: envCount('RUNCTS_SOAK_WARMUP_ROUNDS', 3),
      lifecycleConcurrency: envCount('RUNCTS_SOAK_LIFECYCLE_CONCURRENCY', 3),
      execConcurrency: envCount('RUNCTS_SOAK_EXEC_CONCURRENCY', 4),
      // Measured (docs/testing.md): VmRSS climbs while V8 sizes its heap (~2,000 execs with 200
      // lifecycles here), then stays within ~1.5 MiB; the JS heap after a full GC is flat.
      rssBoundKiB: envCount('RUNCTS_SOAK_RSS_BOUND_KIB', 4 * 1024),
      execArgs: process.env.RUNCTS_SOAK_EXEC_ARGS ? JSON.parse(process.env.RUNCTS_SOAK_EXEC_ARGS) : undefined,
    });
  });
}

// Liveness probes at scale: 100,000 `exec true` in one container, the shim started as containerd
// starts it; after a 10,000-exec warm-up its RSS grows by less than 2 MiB (probe-soak.test.ts runs
// 5,000 in the suite). RUNCTS_PROBE_SOAK_RSS_BOUND_KIB overrides the bound.
if (only !== 'soak') {
  t.test(`probe soak: ${probeExecs} exec true through one shim`, { timeout: probeTimeout }, async (t) => {
    const figures = await soak(t, {
      lifecycles: 0,
      execs: probeExecs,
      execConcurrency: envCount('RUNCTS_SOAK_EXEC_CONCURRENCY', 4),
      rounds: 20,
      warmupRounds: 2,
      rssBoundKiB: envCount('RUNCTS_PROBE_SOAK_RSS_BOUND_KIB', 2048),
      production: true,
    });
    t.ok(figures.snapshot, 'the shim ran from the startup snapshot, as under containerd');
  });
}
