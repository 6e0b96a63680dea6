// ExitOrdering alone (shim/runc/ordering.ts), with a fake clock: every transition, then a seeded
// property test over thousands of random interleavings of exec starts, start failures, exec exits,
// the init's exit and the passing of time (DESIGN lesson 3, seeds/002).
import t from 'tap';
import { ExitOrdering, INIT_HOLD_LIMIT_MS, type Clock } from '../../shim/runc/ordering';

/** A manual clock: timers fire only from advance(), in due order, each at exactly its due time. */
class FakeClock implements Clock {
  now = 0;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void; unrefd: boolean }>();

  setTimeout(fn: () => void, ms: number): { unref(): void } {
    const id = ++this.seq;
    const timer = { at: this.now + ms, fn, unrefd: false };
    this.timers.set(id, timer);
    return { unref: () => { timer.unrefd = true; }, id } as { unref(): void };
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete((handle as { id: number }).id);
  }

  advance(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }
}

const LIMIT = 1000;

/** An ordering over a fake clock that records every publish and forced release in one log. */
function setup(limit = LIMIT) {
  const clock = new FakeClock();
  const log: string[] = [];
  const forced: Array<{ at: number; pending: string[] }> = [];
  const o = new ExitOrdering(clock, (pending) => {
    forced.push({ at: clock.now, pending });
    log.push('forced');
  }, limit);
  const pub = (name: string) => () => { log.push(name); };
  return { clock, log, forced, o, pub };
}

t.test('init exit with no exec at all is published at once, no timer', async (t) => {
  const { o, log, clock, pub } = setup();
  o.initExited(pub('init'));
  t.same(log, ['init']);
  t.equal(o.holdingInit, false);
  t.equal(clock.timers.size, 0, 'nothing to force later');
});

t.test('execStarting / execStarted / execExited update pending', async (t) => {
  const { o, log, pub } = setup();
  t.same(o.pending, { starting: 0, running: [] });
  o.execStarting();
  o.execStarting();
  t.same(o.pending, { starting: 2, running: [] });
  o.execStarted('a');
  t.same(o.pending, { starting: 1, running: ['a'] });
  o.execStartFailed();
  t.same(o.pending, { starting: 0, running: ['a'] });
  o.execExited('a', pub('a'));
  t.same(o.pending, { starting: 0, running: [] });
  t.same(log, ['a'], 'an exec exit is never held');
});

t.test('init exit while an exec is starting is held until the exec start fails', async (t) => {
  const { o, log, clock, pub } = setup();
  o.execStarting();
  o.initExited(pub('init'));
  t.same(log, [], 'held');
  t.equal(o.holdingInit, true);
  t.equal(clock.timers.size, 1, 'a forced-release timer is armed');
  t.equal([...clock.timers.values()][0].at, LIMIT, 'due exactly at the hold limit');
  t.equal([...clock.timers.values()][0].unrefd, true, 'the timer does not keep the shim alive');
  o.execStartFailed();
  t.same(log, ['init'], 'released by the failed start');
  t.equal(o.holdingInit, false);
  t.equal(clock.timers.size, 0, 'timer cleared');
  clock.advance(10 * LIMIT);
  t.same(log, ['init'], 'not published again');
});

t.test('init exit while an exec is starting: the exec starts and exits, then the init follows', async (t) => {
  const { o, log, pub } = setup();
  o.execStarting();
  o.initExited(pub('init'));
  o.execStarted('a');
  t.same(log, [], 'still held: the exec now runs');
  o.execExited('a', pub('a'));
  t.same(log, ['a', 'init'], 'right after the exec\'s own exit');
});

t.test('init exit while an exec runs is held until that exec\'s exit, which goes first', async (t) => {
  const { o, log, clock, pub } = setup();
  o.execStarting();
  o.execStarted('a');
  o.initExited(pub('init'));
  t.same(log, []);
  clock.advance(LIMIT - 1);
  t.same(log, [], 'not forced one ms before the limit');
  o.execExited('a', pub('a'));
  t.same(log, ['a', 'init']);
  t.equal(clock.timers.size, 0);
});

t.test('several execs: the init follows the last one to finish, whatever the order', async (t) => {
  const { o, log, pub } = setup();
  o.execStarting();
  o.execStarted('a');
  o.execStarting();
  o.execStarted('b');
  o.execStarting(); // c: runc exec still running
  o.initExited(pub('init'));
  o.execExited('b', pub('b'));
  t.same(log, ['b']);
  o.execStarted('c');
  o.execExited('a', pub('a'));
  t.same(log, ['b', 'a'], 'c still runs');
  o.execExited('c', pub('c'));
  t.same(log, ['b', 'a', 'c', 'init']);
});

t.test('a start failure that is not the last does not release', async (t) => {
  const { o, log, pub } = setup();
  o.execStarting();
  o.execStarting();
  o.execStarted('a');
  o.initExited(pub('init'));
  o.execStartFailed();
  t.same(log, [], 'a still runs');
  o.execExited('a', pub('a'));
  t.same(log, ['a', 'init']);
});

t.test('an exec exit published before the init exit leaves nothing to hold', async (t) => {
  const { o, log, clock, pub } = setup();
  o.execStarting();
  o.execStarted('a');
  o.execExited('a', pub('a'));
  o.initExited(pub('init'));
  t.same(log, ['a', 'init']);
  t.equal(clock.timers.size, 0);
});

t.test('forced release: exactly at the limit, with the running exec ids, once', async (t) => {
  const { o, log, clock, forced, pub } = setup();
  o.execStarting();
  o.execStarted('a');
  o.execStarting();
  o.execStarted('b');
  o.execStarting(); // never returns
  clock.advance(123);
  o.initExited(pub('init'));
  clock.advance(LIMIT - 1);
  t.same(log, []);
  t.equal(o.holdingInit, true);
  clock.advance(1);
  t.same(forced, [{ at: 123 + LIMIT, pending: ['a', 'b'] }]);
  t.same(log, ['forced', 'init'], 'onForcedRelease is told before the publish');
  t.equal(o.holdingInit, false);
  // Late completions publish the execs' own exits and never the init's again.
  o.execExited('b', pub('b'));
  o.execStartFailed();
  o.execStarted('c');
  o.execExited('c', pub('c'));
  o.execExited('a', pub('a'));
  clock.advance(10 * LIMIT);
  t.same(log, ['forced', 'init', 'b', 'c', 'a']);
  t.equal(forced.length, 1);
});

t.test('the default hold limit is the documented 30 s', async (t) => {
  t.equal(INIT_HOLD_LIMIT_MS, 30_000);
  const clock = new FakeClock();
  const log: string[] = [];
  const o = new ExitOrdering(clock);
  o.execStarting();
  o.initExited(() => log.push('init'));
  clock.advance(INIT_HOLD_LIMIT_MS - 1);
  t.same(log, []);
  clock.advance(1);
  t.same(log, ['init'], 'the default onForcedRelease is a no-op');
});

t.test('without a clock the real one forces the release', async (t) => {
  const o = new ExitOrdering(undefined, undefined, 20);
  const log: string[] = [];
  o.execStarting();
  o.initExited(() => log.push('init'));
  await new Promise((r) => setTimeout(r, 60));
  t.same(log, ['init'], 'forced by a real timer');
});

// ---------------------------------------------------------------------------------------------
// Property test.

/** mulberry32: small, seeded, reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type ExecState = 'starting' | 'running' | 'published' | 'failed';

interface RunResult {
  ok: boolean;
  why?: string;
  trace: string[];
  forced: boolean;
}

/**
 * One random interleaving. The generator follows what Container can do: new execs start only
 * before the init's exit reaches the ordering (a stopped init refuses exec); a starting exec
 * either starts or fails; a running exec exits; some execs "escape" and never exit; time passes.
 */
function runOne(seed: number): RunResult {
  const rnd = prng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const { o, clock, forced } = setup();
  const trace: string[] = [];
  const execs = new Map<string, ExecState>();
  const publishes = new Map<string, number>();
  const order: string[] = [];
  let nextExec = 0;
  const maxExecs = 1 + Math.floor(rnd() * 6);
  const escapeP = rnd() < 0.3 ? 0.25 : 0;
  let initExitedAt: number | undefined;
  let initPublishedAt: number | undefined;
  let why: string | undefined;
  const fail = (m: string) => { why ??= m; };

  const publish = (name: string) => () => {
    publishes.set(name, (publishes.get(name) ?? 0) + 1);
    if (publishes.get(name)! > 1) fail(`${name} published twice`);
    order.push(name);
    if (name !== 'init') return;
    initPublishedAt = clock.now;
    if (initExitedAt === undefined) return fail('init published before initExited');
    const blocking = [...execs].filter(([, s]) => s === 'starting' || s === 'running').map(([id]) => id);
    const waited = clock.now - initExitedAt;
    if (blocking.length > 0) {
      if (waited !== LIMIT) fail(`init published after ${waited} ms while ${blocking.join(',')} starting/running`);
      const f = forced.at(-1);
      if (!f || f.at !== clock.now) fail('init released while blocked without onForcedRelease');
      const running = [...execs].filter(([, s]) => s === 'running').map(([id]) => id).sort();
      if (f && JSON.stringify([...f.pending].sort()) !== JSON.stringify(running)) {
        fail(`forced release reported ${f.pending} but running were ${running}`);
      }
    }
  };

  // Start with no exec, at a random time.
  clock.advance(Math.floor(rnd() * 5000));
  const steps = 4 + Math.floor(rnd() * 30);
  for (let i = 0; i < steps && !why; i++) {
    const starting = [...execs].filter(([, s]) => s === 'starting').map(([id]) => id);
    const running = [...execs].filter(([, s]) => s === 'running').map(([id]) => id);
    const moves: Array<() => void> = [];
    if (initExitedAt === undefined && nextExec < maxExecs) {
      moves.push(() => {
        const id = `e${nextExec++}`;
        execs.set(id, 'starting');
        trace.push(`starting ${id}`);
        o.execStarting();
      });
    }
    if (starting.length) {
      moves.push(() => {
        const id = pick(starting);
        execs.set(id, 'running');
        trace.push(`started ${id}`);
        o.execStarted(id);
      });
      moves.push(() => {
        const id = pick(starting);
        execs.set(id, 'failed');
        trace.push(`startFailed ${id}`);
        o.execStartFailed();
      });
    }
    if (running.length) {
      moves.push(() => {
        const id = pick(running);
        trace.push(`exited ${id}`);
        // The exec's state changes when its publish runs: that is when it stops blocking.
        o.execExited(id, () => {
          execs.set(id, 'published');
          if (initPublishedAt !== undefined && forced.length === 0) fail(`${id} published after the init without a forced release`);
          publish(id)();
        });
        if (publishes.get(id) !== 1) fail(`${id}'s exit was not published at once`);
      });
    }
    if (initExitedAt === undefined) {
      moves.push(() => {
        initExitedAt = clock.now;
        trace.push('initExited');
        o.initExited(publish('init'));
      });
    }
    moves.push(() => {
      const ms = pick([0, 1, Math.floor(rnd() * LIMIT), LIMIT - 1, LIMIT, Math.floor(rnd() * 3 * LIMIT)]);
      trace.push(`advance ${ms}`);
      clock.advance(ms);
    });
    pick(moves)();
  }
  if (!why) {
    // Finish: the init exits if it has not; every exec completes except the escaped ones.
    if (initExitedAt === undefined) {
      initExitedAt = clock.now;
      trace.push('initExited');
      o.initExited(publish('init'));
    }
    for (const [id, s] of execs) {
      if (why) break;
      if (rnd() < escapeP && (s === 'starting' || s === 'running')) {
        trace.push(`${id} escapes`);
        continue;
      }
      if (s === 'starting') {
        if (rnd() < 0.5) {
          trace.push(`startFailed ${id}`);
          execs.set(id, 'failed');
          o.execStartFailed();
          continue;
        }
        trace.push(`started ${id}`);
        execs.set(id, 'running');
        o.execStarted(id);
      }
      if (execs.get(id) === 'running') {
        trace.push(`exited ${id}`);
        o.execExited(id, () => {
          execs.set(id, 'published');
          if (initPublishedAt !== undefined && forced.length === 0) fail(`${id} published after the init without a forced release`);
          publish(id)();
        });
      }
    }
    const escaped = [...execs].some(([, s]) => s === 'starting' || s === 'running');
    if (!escaped && initPublishedAt === undefined) fail('every exec is done but the init was not published');
    trace.push(`advance ${LIMIT}`);
    clock.advance(LIMIT);
  }
  if (!why) {
    if (publishes.get('init') !== 1) fail(`init published ${publishes.get('init') ?? 0} times`);
    if (forced.length > 1) fail('forced release more than once');
    if (forced.length === 1 && forced[0].at !== initExitedAt! + LIMIT) fail(`forced at ${forced[0].at}, not at ${initExitedAt! + LIMIT}`);
    if (forced.length === 0 && initPublishedAt !== undefined) {
      // Released normally: every exec that started had published before the init.
      const before = order.slice(0, order.indexOf('init'));
      for (const [id, s] of execs) if (s === 'published' && !before.includes(id)) fail(`${id} published after the init`);
    }
    if (o.holdingInit) fail('still holding the init');
    if (clock.timers.size !== 0) fail('a timer is left armed');
  }
  return { ok: !why, why, trace, forced: forced.length > 0 };
}

t.test('property: random interleavings keep I2 and I3', async (t) => {
  const RUNS = 20_000;
  let forcedRuns = 0;
  let failures = 0;
  for (let seed = 1; seed <= RUNS; seed++) {
    const r = runOne(seed);
    if (r.forced) forcedRuns++;
    if (!r.ok) {
      failures++;
      if (failures <= 3) t.fail(`seed ${seed}: ${r.why}`, { trace: r.trace });
    }
  }
  t.equal(failures, 0, `${RUNS} interleavings, none broke an invariant`);
  // The generator must exercise both outcomes, or the property proves little.
  t.ok(forcedRuns > RUNS / 50, `forced releases happened (${forcedRuns})`);
  t.ok(RUNS - forcedRuns > RUNS / 2, `normal releases happened (${RUNS - forcedRuns})`);
});
