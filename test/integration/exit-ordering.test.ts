// Issue "Exec and the exit-ordering guarantees, proven under races" (DESIGN lesson 3, seed 002):
// per container, no /tasks/exit before its start event, every exec's exit before the init's,
// exactly one exit per started process with the right pid and status. First the checker itself
// on hand-made sequences, then the race scenarios for both runtimes (runcts: every violation
// fails; containerd 1.6's Go shim: violations are counted and reported), plain and with the
// shim's delay hooks. See docs/exit-ordering-tests.md.
import t from 'tap';
import type { Test } from 'tap';
import {
  addToTally,
  assertOrderingResult,
  CallerOutcome,
  checkExitOrdering,
  DriverResult,
  emptyTally,
  formatResult,
  formatTally,
  orderingPlan,
  OrderingTally,
  parseEventLine,
  parseEventTime,
  RUNTIME_RUNCTS,
  runtimesUnderTest,
  scenario,
  TaskEventLike,
  violationsByInvariant,
  ViolationKind,
  watchShimEnv,
} from './harness';

// ---------------------------------------------------------------------------------------------
// The checker on hand-made sequences: it must accept good ones and flag every kind of violation.

const C = 'c1';
const ev = (topic: string, payload: Record<string, unknown>): TaskEventLike => ({ topic, payload });
const create = (pid: number): TaskEventLike => ev('/tasks/create', { container_id: C, pid });
const start = (pid: number): TaskEventLike => ev('/tasks/start', { container_id: C, pid });
const execAdded = (id: string): TaskEventLike => ev('/tasks/exec-added', { container_id: C, exec_id: id });
const execStarted = (id: string, pid: number): TaskEventLike => ev('/tasks/exec-started', { container_id: C, exec_id: id, pid });
// ctr events prints Go JSON: a zero exit_status is omitted.
const exit = (id: string, pid: number, status = 0): TaskEventLike =>
  ev('/tasks/exit', { container_id: C, id, pid, ...(status ? { exit_status: status } : {}), exited_at: '2026-01-01T00:00:00Z' });
const del = (pid: number, status = 0): TaskEventLike => ev('/tasks/delete', { container_id: C, pid, ...(status ? { exit_status: status } : {}) });

function kinds(events: TaskEventLike[], outcomes: CallerOutcome[] = []): ViolationKind[] {
  return checkExitOrdering(events, outcomes).violations.map(v => v.kind);
}

t.test('checker: a good sequence passes', async t => {
  const other = (e: TaskEventLike): TaskEventLike => ({ ...e, payload: { ...e.payload, container_id: 'c2' } });
  const events = [
    create(10),
    other(create(20)),
    start(10),
    other(start(20)),
    execAdded('e1'),
    execStarted('e1', 11),
    execAdded('e2'),
    execStarted('e2', 12),
    other(exit('c2', 20, 3)),
    exit('e2', 12, 42),
    exit('e1', 11),
    // exec id reuse: a new process under the same id
    execAdded('e1'),
    execStarted('e1', 13),
    exit('e1', 13, 137),
    ev('/tasks/exec-added', { container_id: C, exec_id: 'never-started' }),
    exit(C, 10, 137),
    del(10, 137),
    other(del(20, 3)),
    ev('/containers/delete', { id: C }),
  ];
  const outcomes: CallerOutcome[] = [
    { container: C, started: true, status: 137 },
    { container: C, exec: 'e1', started: true, status: 0 },
    { container: C, exec: 'e1', started: true, status: 137 },
    { container: C, exec: 'e2', started: true, status: 42 },
    { container: C, exec: 'never-started', started: false },
    { container: 'c2', started: true, status: 3 },
  ];
  const r = checkExitOrdering(events, outcomes);
  t.same(r.violations, [], 'no violations');
  t.equal(r.lifecycles, 5, '5 lifecycles: 2 inits, 3 execs (e1 twice, e2)');
  t.equal(r.started, 5);
  t.equal(r.inits, 2);
  t.equal(r.execs, 3);
  t.equal(r.containers, 2);
  t.equal(r.events, 18, 'task events counted, others ignored');
});

t.test('checker: an init killed while created (never started) is not a violation', async t => {
  const r = checkExitOrdering([create(10), exit(C, 10, 137), del(10, 137)], [{ container: C, started: false, status: 137 }]);
  t.same(r.violations, []);
  t.equal(r.lifecycles, 0);
  t.equal(r.unstartedInits, 1);
  // ... unless the caller's start succeeded
  t.same(kinds([create(10), exit(C, 10, 137), del(10, 137)], [{ container: C, started: true, status: 137 }]), ['exit-without-start']);
});

t.test('checker: flags every kind of violation', async t => {
  const cases: Array<{ name: string; events: TaskEventLike[]; outcomes?: CallerOutcome[]; want: ViolationKind[] }> = [
    { name: 'init exit before its /tasks/start', events: [create(10), exit(C, 10), start(10), del(10)], want: ['exit-before-start'] },
    {
      name: 'exec exit before its /tasks/exec-started',
      events: [create(10), start(10), execAdded('e1'), exit('e1', 11, 3), execStarted('e1', 11), exit(C, 10), del(10)],
      want: ['exit-before-start'],
    },
    {
      name: 'exec exit without any /tasks/exec-started',
      events: [create(10), start(10), execAdded('e1'), exit('e1', 11), exit(C, 10), del(10)],
      want: ['exit-without-start'],
    },
    {
      name: 'exec exit after the init exit',
      events: [create(10), start(10), execStarted('e1', 11), exit(C, 10), exit('e1', 11), del(10)],
      want: ['exec-exit-after-init-exit'],
    },
    {
      name: 'exec started and exited after the init exit',
      events: [create(10), start(10), exit(C, 10), execStarted('e1', 11), exit('e1', 11), del(10)],
      want: ['exec-exit-after-init-exit'],
    },
    {
      name: 'exec exit before its start and after the init exit',
      events: [create(10), start(10), exit(C, 10), exit('e1', 11), execStarted('e1', 11), del(10)],
      want: ['exec-exit-after-init-exit', 'exit-before-start'],
    },
    { name: 'duplicate init exit', events: [create(10), start(10), exit(C, 10), exit(C, 10), del(10)], want: ['duplicate-exit'] },
    {
      name: 'duplicate exec exit',
      events: [create(10), start(10), execStarted('e1', 11), exit('e1', 11), exit('e1', 11), exit(C, 10), del(10)],
      want: ['duplicate-exit'],
    },
    { name: 'missing exec exit', events: [create(10), start(10), execStarted('e1', 11), exit(C, 10), del(10)], want: ['missing-exit'] },
    { name: 'missing init exit', events: [create(10), start(10)], want: ['missing-exit'] },
    { name: 'exit pid differs from start pid', events: [create(10), start(10), execStarted('e1', 11), exit('e1', 99), exit(C, 10), del(10)], want: ['pid-mismatch'] },
    {
      name: 'exit status differs from what the caller got',
      events: [create(10), start(10), execStarted('e1', 11), exit('e1', 11, 3), exit(C, 10), del(10)],
      outcomes: [{ container: C, exec: 'e1', started: true, status: 4 }],
      want: ['status-mismatch'],
    },
    {
      name: 'init exit status differs from what the caller got (zero omitted)',
      events: [create(10), start(10), exit(C, 10), del(10)],
      outcomes: [{ container: C, started: true, status: 7 }],
      want: ['status-mismatch'],
    },
    { name: 'second exec-started without an exit', events: [create(10), start(10), execStarted('e1', 11), execStarted('e1', 12), exit('e1', 11), exit(C, 10), del(10)], want: ['duplicate-start'] },
    {
      name: 'the caller started an exec, no event at all (stale stream)',
      events: [create(10), start(10), exit(C, 10), del(10)],
      outcomes: [{ container: C, exec: 'e1', started: true, status: 0 }],
      want: ['missing-start'],
    },
    {
      name: 'the caller ran a container, no event at all',
      events: [],
      outcomes: [{ container: C, started: true, status: 0 }],
      want: ['missing-start'],
    },
    {
      name: 'an init created, never started, deleted without any /tasks/exit',
      events: [create(10), del(10, 137)],
      outcomes: [{ container: C, started: false, status: 137 }],
      want: ['missing-exit'],
    },
    { name: '/tasks/delete before the init exit', events: [create(10), start(10), del(10), exit(C, 10)], want: ['delete-mismatch'] },
    { name: '/tasks/delete with another status', events: [create(10), start(10), exit(C, 10, 137), del(10, 0)], want: ['delete-mismatch'] },
  ];
  for (const c of cases) t.same(kinds(c.events, c.outcomes), c.want, c.name);
  const v = checkExitOrdering([create(10), start(10), execStarted('e1', 11), exit(C, 10), exit('e1', 11), del(10)]).violations[0]!;
  t.equal(v.invariant, 2, 'exec-exit-after-init-exit is invariant 2');
  t.equal(v.process, 'e1');
  t.equal(v.container, C);
  t.equal(v.events.length, 2, 'names both events');
  const by = violationsByInvariant(checkExitOrdering([create(10), exit(C, 10), start(10), exit(C, 10)]).violations);
  t.same([by[1].length, by[2].length, by[3].length], [1, 0, 1], 'exit-before-start is invariant 1, duplicate-exit invariant 3');
});

t.test('checker: works on parsed `ctr events` lines', async t => {
  const lines = [
    '2026-11-22 11:03:36.504480689 +0000 UTC rcts-1 /tasks/create {"container_id":"c1","bundle":"/b","pid":14797}',
    '2026-11-22 11:03:36.512741383 +0000 UTC rcts-1 /tasks/start {"container_id":"c1","pid":14797}',
    '2026-11-22 11:03:36.535831453 +0000 UTC rcts-1 /tasks/exec-added {"container_id":"c1","exec_id":"e0"}',
    '2026-11-22 11:03:36.562252559 +0000 UTC rcts-1 /tasks/exec-started {"container_id":"c1","exec_id":"e0","pid":14844}',
    '2026-11-22 11:03:36.562817932 +0000 UTC rcts-1 /tasks/exit {"container_id":"c1","id":"e0","pid":14844,"exited_at":"2026-11-22T11:03:36.562160442Z"}',
    '2026-11-22 11:03:37.562817932 +0000 UTC rcts-1 /tasks/exit {"container_id":"c1","id":"c1","pid":14797,"exit_status":137,"exited_at":"2026-11-22T11:03:37.562160442Z"}',
    '2026-11-22 11:03:37.662817932 +0000 UTC rcts-1 /tasks/delete {"container_id":"c1","pid":14797,"exit_status":137,"exited_at":"2026-11-22T11:03:37.562160442Z"}',
  ];
  const events = lines.map(l => parseEventLine(l)!);
  t.ok(events.every(Boolean), 'all lines parse');
  const good = checkExitOrdering(events, [
    { container: 'c1', started: true, status: 137 },
    { container: 'c1', exec: 'e0', started: true, status: 0 },
  ]);
  t.same(good.violations, []);
  t.equal(good.lifecycles, 2);
  t.equal(good.exitedBeforeStartPublished, 1, 'e0 exited (exited_at) before its exec-started was published: a race seen, no violation');
  t.equal(good.execExitsPublishedAfterInitExited, 0);
  t.equal(parseEventTime('2026-11-22 11:03:36.504480689 +0000 UTC'), Date.parse('2026-11-22T11:03:36Z') + 504.480689);
  t.equal(parseEventTime('2026-11-22T11:03:36.081Z'), Date.parse('2026-11-22T11:03:36.081Z'));
  t.equal(parseEventTime('2026-11-22 12:03:36 +0100 CET'), Date.parse('2026-11-22T11:03:36Z'));
  t.equal(parseEventTime(undefined), undefined);
  t.equal(parseEventTime({ seconds: 1796488201, nanos: 6664402 }), 1796488201006.664402, 'ctr 2.x: exited_at as {seconds, nanos}');
  const swapped = [events[0]!, events[1]!, events[2]!, events[3]!, events[5]!, events[4]!, events[6]!];
  t.same(checkExitOrdering(swapped).violations.map(v => v.kind), ['exec-exit-after-init-exit']);
});

// ---------------------------------------------------------------------------------------------
// The race scenarios.

const SCALE = Number(process.env.RUNCTS_ORDERING_SCALE ?? 1) || 1;
/** runcts must show at least this many checked lifecycles over the whole suite (at scale 1). */
const MIN_RUNCTS_LIFECYCLES = 1000;
const tallies = new Map<string, OrderingTally>();
const entriesRun = new Map<string, number>();
const plan = orderingPlan(SCALE);
const suiteStarted = Date.now();

function judge(t: Test, res: DriverResult): void {
  t.comment(formatResult(res));
  let tally = tallies.get(res.runtime);
  if (!tally) tallies.set(res.runtime, (tally = emptyTally()));
  addToTally(tally, res);
  assertOrderingResult(t, res, res.runtime === RUNTIME_RUNCTS);
}

for (const entry of plan) {
  const runtimes = runtimesUnderTest().filter(r => !entry.runctsOnly || r === RUNTIME_RUNCTS);
  if (!runtimes.length) continue;
  scenario(
    t,
    entry.name,
    async (t, ctx) => {
      const shimEnv = entry.hooks ? watchShimEnv(ctx.cd, entry.hooks) : undefined;
      const res = await entry.run(ctx);
      if (entry.expectRace && ctx.runtime === RUNTIME_RUNCTS) {
        t.ok(res.report[entry.expectRace] > 0, `the hooks forced the race: ${entry.expectRace} ${res.report[entry.expectRace]} times`);
      }
      if (shimEnv) {
        const { shims, withEnv, without } = shimEnv();
        t.ok(shims > 0 && without.length === 0, `the shims carried the delay hooks ${JSON.stringify(entry.hooks)} (${withEnv} of ${shims} seen)`, { without });
      }
      entriesRun.set(ctx.runtime, (entriesRun.get(ctx.runtime) ?? 0) + 1);
      judge(t, res);
    },
    { runtimes, containerd: { env: entry.hooks }, timeoutMs: 300_000 },
  );
}

t.test('summary', async t => {
  for (const [runtime, tally] of tallies) t.comment(`${runtime}: ${formatTally(tally)}`);
  t.comment(`scenarios took ${Math.round((Date.now() - suiteStarted) / 1000)} s`);
  const runcts = tallies.get(RUNTIME_RUNCTS);
  const allRan = entriesRun.get(RUNTIME_RUNCTS) === plan.length;
  if (runtimesUnderTest().includes(RUNTIME_RUNCTS) && SCALE >= 1) {
    t.ok(allRan, `every scenario ran for runcts (${entriesRun.get(RUNTIME_RUNCTS) ?? 0} of ${plan.length})`);
    t.ok((runcts?.lifecycles ?? 0) >= MIN_RUNCTS_LIFECYCLES, `runcts: at least ${MIN_RUNCTS_LIFECYCLES} lifecycles checked (${runcts?.lifecycles ?? 0})`);
  }
});
