// Stress run of the exit-ordering scenarios (the plan of exit-ordering.test.ts), for much longer
// than the suite. Not a tap test: tap skips it.
//
//   node dist/test/integration/stress-ordering.js [ITERATIONS] [SCALE]
//   RUNCTS_STRESS_ITERATIONS=N  RUNCTS_STRESS_SCALE=S  RUNCTS_TEST_RUNTIMES=io.containerd.runcts.v2
//
// Each iteration runs every scenario of the plan (counts multiplied by SCALE), each on its own
// private containerd, for every runtime under test, and checks for leaks after each. Prints one
// line per scenario and totals per runtime; exits 1 when runcts broke an invariant, a ctr call
// that must succeed failed or hung, or something leaked. The Go shim's violations are reported.
import {
  addToTally,
  DriverResult,
  emptyTally,
  findLeaks,
  formatResult,
  formatTally,
  leakSnapshot,
  orderingPlan,
  OrderingTally,
  RUNTIME_RUNCTS,
  runtimesUnderTest,
  startContainerd,
} from './harness';

if (process.env.TAP === '1') {
  // Picked up by `tap dist/test/integration`: not a test.
  console.log('1..0 # not a tap test: run it with node dist/test/integration/stress-ordering.js [ITERATIONS]');
  process.exit(0);
}

function positive(v: string | undefined, dflt: number): number {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : dflt;
}

const ITERATIONS = Math.floor(positive(process.argv[2] ?? process.env.RUNCTS_STRESS_ITERATIONS, 10));
const SCALE = positive(process.argv[3] ?? process.env.RUNCTS_STRESS_SCALE, 1);

async function runEntry(runtime: string, name: string, hooks: Readonly<Record<string, string>> | undefined, fn: (ctx: { cd: import('./harness').Containerd; runtime: string; id(p: string): string }) => Promise<DriverResult>): Promise<{ res?: DriverResult; problems: string[] }> {
  const problems: string[] = [];
  const cd = await startContainerd({ env: hooks });
  const ids: string[] = [];
  let n = 0;
  const before = leakSnapshot();
  let res: DriverResult | undefined;
  try {
    await cd.importBusybox();
    res = await fn({
      cd,
      runtime,
      id(prefix: string): string {
        const id = `${prefix}-${++n}-${process.pid}`;
        ids.push(id);
        return id;
      },
    });
    const leaks = await findLeaks(cd, before, { ids });
    problems.push(...leaks.leaks.map(l => `leak: ${l}`));
  } catch (e) {
    problems.push(`${name}: ${(e as Error).stack ?? String(e)}`);
  } finally {
    const notes = await cd.stop();
    problems.push(...notes.map(x => `cleanup: ${x}`));
  }
  return { res, problems };
}

async function main(): Promise<number> {
  const plan = orderingPlan(SCALE);
  const runtimes = runtimesUnderTest();
  const tallies = new Map<string, OrderingTally>(runtimes.map(r => [r, emptyTally()]));
  let bad = 0;
  const started = Date.now();
  console.log(`exit-ordering stress: ${ITERATIONS} iterations, scale ${SCALE}, runtimes ${runtimes.join(', ')}, ${plan.length} scenarios`);
  for (let it = 1; it <= ITERATIONS; it++) {
    for (const entry of plan) {
      for (const runtime of runtimes) {
        if (entry.runctsOnly && runtime !== RUNTIME_RUNCTS) continue;
        const strict = runtime === RUNTIME_RUNCTS;
        const { res, problems } = await runEntry(runtime, entry.name, entry.hooks, ctx => entry.run(ctx));
        if (res) {
          addToTally(tallies.get(runtime)!, res);
          console.log(`[${it}/${ITERATIONS}] ${formatResult(res)}`);
          const must: string[] = [];
          if (res.unfinished.length) must.push(`containers without /containers/delete in the stream: ${res.unfinished.join(', ')}`);
          if (res.report.started < res.expectedLifecycles) must.push(`only ${res.report.started} start events for ${res.expectedLifecycles} started processes`);
          must.push(...res.failures.map(f => `failed: ${f}`));
          if (strict) {
            must.push(...res.timeouts.map(f => `hung: ${f}`));
            must.push(...res.report.violations.map(v => `invariant ${v.invariant} ${v.kind}: ${v.message}\n    ${v.events.join('\n    ')}`));
          } else {
            for (const v of res.report.violations.slice(0, 3)) console.log(`    (${runtime}) invariant ${v.invariant} ${v.kind}: ${v.message}`);
            for (const f of res.timeouts.slice(0, 2)) console.log(`    (${runtime}) hung: ${f.split('\n')[0]}`);
          }
          if (strict && must.length) bad++;
          for (const m of must.slice(0, 10)) console.log(`    ${strict ? 'FAIL' : 'note'}: ${m}`);
        }
        if (problems.length) {
          bad++;
          for (const p of problems) console.log(`    FAIL: ${p}`);
        }
      }
    }
    for (const [runtime, tally] of tallies) console.log(`after iteration ${it}: ${runtime}: ${formatTally(tally)}`);
  }
  console.log(`done in ${Math.round((Date.now() - started) / 1000)} s`);
  for (const [runtime, tally] of tallies) console.log(`${runtime}: ${formatTally(tally)}`);
  console.log(bad ? `FAILED: ${bad} scenario runs with problems` : 'OK');
  return bad ? 1 : 0;
}

main().then(
  code => process.exit(code),
  e => {
    console.error(e);
    process.exit(2);
  },
);
