// The reaper (docs/reaper.md): real children for exit codes, load, orphans, the exit-before-claim
// race and slow subscribers; a fake Native for ordering, pid reuse and pruning.
import * as fs from 'node:fs';
import * as net from 'node:net';
import t from 'tap';
import { native, type Native, type SpawnOptions } from '../../shim/framework/native';
import { Reaper, type Exit } from '../../shim/framework/reaper';

const n = native();
const ENV = ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'];

function readAll(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** A shell child whose stdout is a pipe; `out` resolves when every holder of the pipe closed it. */
function sh(reaper: Reaper, script: string, extraFds: number[] = []): { pid: number; exited: Promise<Exit>; out: Promise<string> } {
  const [r, w] = n.pipe();
  try {
    const child = reaper.spawn({ file: '/bin/sh', args: ['sh', '-c', script], env: ENV, fds: [-1, w, -1, ...extraFds] });
    return { ...child, out: readAll(r) };
  } finally {
    n.closeFd(w);
  }
}

function state(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2];
  } catch {
    return undefined; // gone
  }
}

function zombies(pids: Iterable<number>): number {
  let z = 0;
  for (const pid of pids) if (state(pid) === 'Z') z++;
  return z;
}

function ppid(pid: number): number {
  return Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** Busy-wait (no event loop turn, so no SIGCHLD handling) until cond() or the deadline. */
function spinUntil(cond: () => boolean, ms = 5000): boolean {
  const end = Date.now() + ms;
  while (!cond()) if (Date.now() > end) return false;
  return true;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}

/** Records every exit a subscriber sees; seen(pid) resolves once the pid's exit was delivered. */
function recorder(reaper: Reaper): { exits: Exit[]; seen(pid: number): Promise<Exit>; stop(): void } {
  const exits: Exit[] = [];
  const waiting = new Map<number, (e: Exit) => void>();
  const stop = reaper.subscribe((e) => {
    exits.push(e);
    waiting.get(e.pid)?.(e);
  });
  return {
    exits,
    seen: (pid) => {
      const e = exits.find((x) => x.pid === pid);
      return e ? Promise.resolve(e) : new Promise((resolve) => waiting.set(pid, resolve));
    },
    stop,
  };
}

t.test('real children', async (t) => {
  const reaper = Reaper.start(n);
  t.teardown(() => reaper.stop());
  t.throws(() => Reaper.start(n), /already running/, 'one reaper per process');

  t.test('exit codes: 0, 3, SIGKILL is 137, SIGTERM is 143', async (t) => {
    const cases: Array<[string, number]> = [['exit 0', 0], ['exit 3', 3], ['kill -9 $$', 137], ['kill -15 $$', 143]];
    for (const [script, status] of cases) {
      const c = sh(reaper, script);
      const e = await within(c.exited, 5000, script);
      t.equal(e.status, status, script);
      t.equal(e.pid, c.pid);
      t.ok(e.exitedAt instanceof Date);
      t.equal(state(c.pid), undefined, 'no zombie left');
    }
  });

  t.test('500 concurrent spawns: each resolved exactly once with its own status', async (t) => {
    const rec = recorder(reaper);
    t.teardown(rec.stop);
    const kids: Array<{ pid: number; want: number; exited: Promise<Exit> }> = [];
    for (let i = 0; i < 500; i++) {
      const want = i % 7 === 0 ? 137 : i % 200;
      const script = want === 137 ? 'kill -9 $$' : `exit ${want}`;
      const c = reaper.spawn({ file: '/bin/sh', args: ['sh', '-c', script], env: ENV, fds: [-1, -1, -1] });
      kids.push({ pid: c.pid, want, exited: c.exited });
    }
    const got = await within(Promise.all(kids.map((k) => k.exited)), 60_000, '500 exits');
    let right = 0;
    for (let i = 0; i < kids.length; i++) if (got[i].pid === kids[i].pid && got[i].status === kids[i].want) right++;
    t.equal(right, 500, 'every waiter got its own process\'s status');
    const counts = new Map<number, number>();
    for (const e of rec.exits) counts.set(e.pid, (counts.get(e.pid) ?? 0) + 1);
    t.equal(kids.filter((k) => counts.get(k.pid) === 1).length, 500, 'subscribers saw each exit exactly once');
    t.equal(zombies(kids.map((k) => k.pid)), 0, 'no zombies');
    t.equal(reaper.unclaimedCount, 0, 'nothing left unclaimed');
  });

  t.test('orphans: a grandchild is reparented to us and its exit collected (subreaper)', async (t) => {
    // The grandchild blocks reading a pipe whose only writer is ours, so it is alive (and
    // reparented) when we look, and exits when we close the writer.
    const [gr, gw] = n.pipe();
    const c = sh(reaper, '(read x; exit 5) <&3 >/dev/null & echo $!', [gr]);
    n.closeFd(gr);
    const gpid = Number((await within(c.out, 5000, 'grandchild pid')).trim());
    t.equal((await within(c.exited, 5000, 'child exit')).status, 0, 'the child exited');
    t.equal(ppid(gpid), process.pid, 'the grandchild is now ours');
    const exit = reaper.wait(gpid);
    n.closeFd(gw);
    t.equal((await within(exit, 5000, 'grandchild exit')).status, 5);
    t.equal(state(gpid), undefined, 'reaped: no zombie, /proc entry gone');
  });

  t.test('wait(pid) after the exit was already collected (exit before the pid file is read)', async (t) => {
    const rec = recorder(reaper);
    t.teardown(rec.stop);
    const mark = reaper.mark();
    // The grandchild exits (orphaned, reparented to us) only when we close the pipe it reads.
    const [gr, gw] = n.pipe();
    const c = sh(reaper, '(read x; exit 7) <&3 >/dev/null & echo $!', [gr]);
    n.closeFd(gr);
    const gpid = Number((await within(c.out, 5000, 'grandchild pid')).trim());
    await within(c.exited, 5000, 'child exit');
    n.closeFd(gw);
    // Deterministic: claim only once the reaper has collected and published the grandchild's exit.
    await within(rec.seen(gpid), 5000, 'grandchild collected');
    t.ok(reaper.unclaimedCount >= 1, 'kept while unclaimed');
    const e = await within(reaper.wait(gpid, mark), 1000, 'claim of an already collected exit');
    t.equal(e.status, 7);
    t.equal(e.pid, gpid);
    t.equal(reaper.unclaimedCount, 0, 'handed over, no longer kept');
  });

  t.test('a slow synchronous subscriber does not leave zombies behind it', async (t) => {
    // Two children are zombies before the reaper runs, so one drain collects both. While the
    // subscriber handles the first, five more children exit; they must be collected before the
    // second delivery, not after the queue is empty.
    const late: number[] = [];
    const zombiesAtCall: number[] = [];
    const early = [0, 1].map(() => reaper.spawn({ file: '/bin/true', args: ['true'], env: [], fds: [] }));
    const earlyPids = new Set(early.map((c) => c.pid));
    const lateExits: Array<Promise<Exit>> = [];
    const stop = reaper.subscribe((e) => {
      if (!earlyPids.has(e.pid)) return;
      zombiesAtCall.push(zombies(late));
      if (late.length > 0) return;
      for (let i = 0; i < 5; i++) {
        const c = reaper.spawn({ file: '/bin/true', args: ['true'], env: [], fds: [] });
        late.push(c.pid);
        lateExits.push(c.exited);
      }
      spinUntil(() => zombies(late) === late.length); // heavy work, long enough for them to exit
    });
    t.teardown(stop);
    t.ok(spinUntil(() => zombies(earlyPids) === 2), 'both early children are zombies');
    await within(Promise.all(early.map((c) => c.exited)), 5000, 'early exits');
    await within(Promise.all(lateExits), 5000, 'late exits');
    t.same(zombiesAtCall, [0, 0], 'the late children were collected before the second delivery');
  });

  t.test('an async subscriber is never awaited: exits keep being collected while it works', async (t) => {
    const kids = Array.from({ length: 20 }, () => reaper.spawn({ file: '/bin/sh', args: ['sh', '-c', 'exit 1'], env: [], fds: [] }));
    const all = Promise.all(kids.map((k) => k.exited));
    let calls = 0;
    let finished = 0;
    const stop = reaper.subscribe(async () => {
      calls++;
      await all; // only completes if the reaper keeps collecting while we are "busy"
      finished++;
    });
    t.teardown(stop);
    await within(all, 5000, 'all exits while the subscriber is busy');
    t.equal(zombies(kids.map((k) => k.pid)), 0);
    await new Promise((r) => setImmediate(r));
    t.equal(calls, 20);
    t.equal(finished, 20);
  });

  t.test('a pending exit keeps the process alive (Node unrefs its signal handles)', async (t) => {
    // A bare script whose only work is waiting for a child: without the reaper's keep-alive,
    // node would exit at once and never print.
    const reaperJs = require.resolve('../../shim/framework/reaper');
    const script = `
      const { Reaper } = require(${JSON.stringify(reaperJs)});
      const r = Reaper.start();
      r.spawn({ file: '/bin/sleep', args: ['sleep', '0.3'], env: [], fds: [] }).exited
        .then((e) => { process.stdout.write('child exited ' + e.status + '\\n'); r.stop(); });`;
    const [r, w] = n.pipe();
    const c = reaper.spawn({ file: process.execPath, args: ['node', '-e', script], env: [], fds: [-1, w, 2] });
    n.closeFd(w);
    const [out, e] = await within(Promise.all([readAll(r), c.exited]), 10_000, 'node child');
    t.equal(out, 'child exited 0\n');
    t.equal(e.status, 0);
  });
});

/** A Native whose children and exits the test scripts; drain() stands in for SIGCHLD. */
class FakeNative {
  nextPids: number[] = [];
  exits: Array<{ pid: number; status: number }> = [];
  failReap = false;
  setSubreaper(): void {}
  reap(): Array<{ pid: number; status: number }> {
    if (this.failReap) throw new Error('reap failed');
    const r = this.exits;
    this.exits = [];
    return r;
  }
  spawn(_o: SpawnOptions): number {
    const pid = this.nextPids.shift();
    if (pid === undefined) throw Object.assign(new Error('ENOENT: fake'), { code: 'ENOENT' });
    return pid;
  }
}

function fake(opts: { now?: () => number } = {}): { f: FakeNative; reaper: Reaper; errors: unknown[] } {
  const f = new FakeNative();
  const errors: unknown[] = [];
  const reaper = Reaper.start(f as unknown as Native, { error: (obj) => errors.push(obj) }, opts);
  return { f, reaper, errors };
}

/** Bounded, so that a broken reaper fails the test instead of hanging it. */
function got<T>(p: Promise<T>): Promise<T> {
  return within(p, 2000, 'exit delivery');
}

async function isSettled(p: Promise<unknown>): Promise<boolean> {
  const marker = {};
  return (await Promise.race([p, Promise.resolve(marker)])) !== marker;
}

t.test('fake children', async (t) => {
  t.test('collection order, exactly once, waiters resolved before subscribers run', async (t) => {
    const { f, reaper } = fake();
    t.teardown(() => reaper.stop());
    f.nextPids = [10, 11, 12];
    const kids = [reaper.spawn({} as SpawnOptions), reaper.spawn({} as SpawnOptions), reaper.spawn({} as SpawnOptions)];
    const seen: number[] = [];
    const resolvedFirst: Array<Promise<boolean>> = [];
    reaper.subscribe((e) => {
      seen.push(e.pid);
      resolvedFirst.push(isSettled(kids[e.pid - 10].exited));
    });
    f.exits = [{ pid: 11, status: 1 }, { pid: 10, status: 0 }];
    reaper.drain();
    f.exits = [{ pid: 12, status: 137 }];
    reaper.drain();
    reaper.drain();
    t.same(seen, [11, 10, 12]);
    t.same(await Promise.all(resolvedFirst), [true, true, true]);
    t.same((await got(Promise.all(kids.map((k) => k.exited)))).map((e) => e.status), [0, 1, 137]);
    t.equal(reaper.unclaimedCount, 0);
  });

  t.test('pid reuse: a new process with an old pid only gets its own exit', async (t) => {
    const { f, reaper } = fake();
    t.teardown(() => reaper.stop());
    // An orphan 20 exits unclaimed; then our own spawn gets pid 20.
    f.exits = [{ pid: 20, status: 1 }];
    reaper.drain();
    t.equal(reaper.unclaimedCount, 1);
    f.nextPids = [20];
    const a = reaper.spawn({} as SpawnOptions);
    t.equal(reaper.unclaimedCount, 0, 'the stale exit is discarded at spawn');
    await new Promise((r) => setImmediate(r));
    t.notOk(await isSettled(a.exited), 'not resolved by the earlier process');
    f.exits = [{ pid: 20, status: 2 }];
    reaper.drain();
    t.equal((await got(a.exited)).status, 2);
    // Our child 30 exits, then a new child gets pid 30 again.
    f.nextPids = [30, 30];
    const b = reaper.spawn({} as SpawnOptions);
    f.exits = [{ pid: 30, status: 0 }];
    reaper.drain();
    t.equal((await got(b.exited)).status, 0);
    const c = reaper.spawn({} as SpawnOptions);
    await new Promise((r) => setImmediate(r));
    t.notOk(await isSettled(c.exited));
    f.exits = [{ pid: 30, status: 9 }];
    reaper.drain();
    t.equal((await got(c.exited)).status, 9);
  });

  t.test('wait(pid, since) discards an exit kept from before the mark', async (t) => {
    const { f, reaper } = fake();
    t.teardown(() => reaper.stop());
    f.exits = [{ pid: 40, status: 1 }, { pid: 41, status: 4 }];
    reaper.drain();
    const mark = reaper.mark();
    const w40 = reaper.wait(40, mark);
    t.equal(reaper.unclaimedCount, 1, 'the stale exit of 40 is dropped');
    t.notOk(await isSettled(w40));
    f.exits = [{ pid: 40, status: 3 }];
    reaper.drain();
    t.equal((await got(w40)).status, 3);
    t.equal((await got(reaper.wait(41))).status, 4, 'without a mark the kept exit is handed over');
    f.exits = [{ pid: 42, status: 6 }];
    reaper.drain();
    t.equal((await got(reaper.wait(42, mark))).status, 6, 'an exit collected after the mark is handed over');
  });

  t.test('several waiters of one pid all get its exit, once', async (t) => {
    const { f, reaper } = fake();
    t.teardown(() => reaper.stop());
    f.nextPids = [50];
    const a = reaper.spawn({} as SpawnOptions);
    const b = reaper.wait(50);
    f.exits = [{ pid: 50, status: 5 }];
    reaper.drain();
    t.equal((await got(a.exited)).status, 5);
    t.equal((await got(b)).status, 5);
    t.equal(reaper.unclaimedCount, 0, 'delivered to waiters, not kept');
    const later = reaper.wait(50);
    await new Promise((r) => setImmediate(r));
    t.notOk(await isSettled(later), 'a later claim waits for a later exit');
  });

  t.test('subscriber exceptions and rejections are logged; delivery goes on', async (t) => {
    const { f, reaper, errors } = fake();
    t.teardown(() => reaper.stop());
    const seen: number[] = [];
    reaper.subscribe(() => { throw new Error('boom'); });
    reaper.subscribe(async () => { throw new Error('async boom'); });
    reaper.subscribe((e) => { seen.push(e.pid); });
    f.exits = [{ pid: 60, status: 0 }, { pid: 61, status: 0 }];
    reaper.drain();
    t.same(seen, [60, 61]);
    await new Promise((r) => setImmediate(r));
    t.equal(errors.length, 4);
    f.failReap = true;
    reaper.drain();
    t.equal(errors.length, 5, 'a failing reap is logged');
    f.failReap = false;
    f.exits = [{ pid: 62, status: 0 }];
    reaper.drain();
    t.same(seen, [60, 61, 62], 'and collection goes on');
  });

  t.test('a consumer that spawns, drains or unsubscribes does not reorder delivery', async (t) => {
    const { f, reaper } = fake();
    t.teardown(() => reaper.stop());
    const log: string[] = [];
    let depth = 0;
    const unsubB = reaper.subscribe((e) => {
      depth++;
      log.push(`a${e.pid}@${depth}`);
      if (e.pid === 70) {
        f.exits = [{ pid: 71, status: 0 }];
        reaper.drain(); // nested: collects 71, must not deliver it inside this call
        unsub();
      }
      depth--;
    });
    const unsub = reaper.subscribe((e) => log.push(`b${e.pid}`));
    f.exits = [{ pid: 70, status: 0 }];
    reaper.drain();
    t.same(log, ['a70@1', 'a71@1'], 'b was unsubscribed before its turn; 71 came after 70, not inside it');
    unsubB();
  });

  t.test('unclaimed exits are pruned after keepUnclaimedMs', async (t) => {
    let now = 0;
    const { f, reaper } = fake({ now: () => now });
    t.teardown(() => reaper.stop());
    f.exits = [{ pid: 80, status: 1 }];
    reaper.drain();
    now = 5 * 60_000;
    f.exits = [{ pid: 81, status: 1 }];
    reaper.drain();
    t.equal(reaper.unclaimedCount, 2);
    now = 10 * 60_000 + 1;
    reaper.drain();
    t.equal(reaper.unclaimedCount, 1, 'the 10-minute-old exit is gone');
    t.equal((await got(reaper.wait(81))).status, 1, 'the younger one is still there');
  });

  t.test('stop() removes the SIGCHLD listener; spawn and wait throw afterwards', async (t) => {
    const before = process.listenerCount('SIGCHLD');
    const { reaper } = fake();
    t.equal(process.listenerCount('SIGCHLD'), before + 1);
    reaper.stop();
    reaper.stop();
    t.equal(process.listenerCount('SIGCHLD'), before);
    t.throws(() => reaper.spawn({} as SpawnOptions), /stopped/);
    t.throws(() => reaper.wait(1), /stopped/);
    const again = fake();
    again.reaper.stop();
    t.pass('a new reaper can start after stop');
  });

  t.test('a failed spawn registers nothing', async (t) => {
    const { reaper } = fake();
    t.teardown(() => reaper.stop());
    t.throws(() => reaper.spawn({} as SpawnOptions), { code: 'ENOENT' });
  });
});
