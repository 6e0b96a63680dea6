// IdleExit, the exit decision of a daemon shared by a namespace (ShimGrouping = "namespace"):
// exit only after the linger with no new connection, still idle at the deadline, under the lock
// `start` holds while it probes the socket, and only if no connection arrived during the settle
// that follows the lock. Real (small) timings on a temp unix socket and a temp lock directory.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import t from 'tap';
import type { Test } from 'tap';
import { IdleExit } from '../../shim/framework/idle-exit';
import { native } from '../../shim/framework/native';

const LINGER_MS = 300;
/** idle-exit.ts SETTLE_MS: how long the decision waits under the lock for queued connections. */
const SETTLE_MS = 50;
/** Node timers have a 1 ms granularity: allow that much below an exact lower bound. */
const EARLY_MS = 2;
/** Upper bounds are generous: a benchmark may load the machine's two cores meanwhile. */
const SLACK_MS = 1500;
// "Not before" is asserted on the recorded times of exit() and of the lock calls, never by
// sampling at a moment a loaded machine may overshoot; sampled checks are only made where no
// timer could have fired yet, or guarded by `stillBefore`.

const n = native();
const realTryLock = n.tryLockExclusive;

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/** For a sampled check that is only meaningful before `deadline` (performance.now() time): false, with a note, when we woke up too late. */
function stillBefore(t: Test, deadline: number, what: string): boolean {
  if (performance.now() < deadline) return true;
  t.comment(`${what}: not checked, this process woke up too late (${Math.round(performance.now() - deadline)} ms past)`);
  return false;
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

function openDir(dir: string): number {
  return fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
}

/** Whether someone else holds the flock on dir: try it on a fresh open file description, release at once. */
function lockHeldElsewhere(dir: string): boolean {
  const fd = openDir(dir);
  try {
    return !realTryLock.call(n, fd);
  } finally {
    fs.closeSync(fd); // releases it if we got it
  }
}

/** Open fds of this process that refer to dir (the lock's open file descriptions). */
function fdsOn(dir: string): number {
  let count = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === dir) count++;
    } catch {
      // the fd of the readdir itself, closed meanwhile
    }
  }
  return count;
}

interface Fixture {
  lockDir: string;
  sock: string;
  server: net.Server;
  idle: IdleExit;
  /** performance.now() of each exit() call. */
  exits: number[];
  /** Connect; resolve once the server has accepted, with performance.now() of its 'connection' event. */
  connect(): Promise<number>;
  /** Start a connection without waiting (the connect(2) itself happens synchronously). */
  connectNow(): net.Socket;
  /** What `start` does: connect, close without a byte; resolves once the server saw the close. */
  probe(): Promise<number>;
}

async function fixture(t: Test, lingerMs = LINGER_MS, reservationMs?: number): Promise<Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-idle-'));
  const lockDir = path.join(dir, 's');
  fs.mkdirSync(lockDir);
  const sock = path.join(dir, 'shim.sock');
  const server = net.createServer();
  const clients: net.Socket[] = [];
  const accepted: net.Socket[] = [];
  const acceptedAt: number[] = [];
  const exits: number[] = [];
  const idle = new IdleExit(server, lockDir, lingerMs, () => exits.push(performance.now()), reservationMs);
  // Registered after IdleExit's own listener: runs in the same emit, right after it.
  server.on('connection', (s) => {
    accepted.push(s);
    acceptedAt.push(performance.now());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: sock }, () => resolve());
  });
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    for (const s of accepted) s.destroy();
    if (server.listening) await new Promise<void>((res) => server.close(() => res()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const connectNow = (): net.Socket => {
    const c = net.connect(sock);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  const connect = (): Promise<number> => {
    const before = accepted.length;
    connectNow();
    return waitFor(() => accepted.length > before, 2000).then((ok) => {
      if (!ok) throw new Error('the server did not accept the connection');
      return acceptedAt[before]!;
    });
  };
  const probe = async (): Promise<number> => {
    const before = accepted.length;
    const c = connectNow();
    if (!(await waitFor(() => accepted.length > before, 2000))) throw new Error('the server did not accept the probe');
    const s = accepted[before]!;
    const closed = new Promise<number>((res) => s.once('close', () => res(performance.now())));
    c.destroy();
    return closed;
  };
  return { lockDir, sock, server, idle, exits, connect, connectNow, probe };
}

/** Wrap native().tryLockExclusive for one test: `onGrant` runs right after the lock was granted. */
function spyTryLock(t: Test, onGrant?: () => void): { calls: number; firstCall: number; grants: number[] } {
  const stats = { calls: 0, firstCall: 0, grants: [] as number[] };
  n.tryLockExclusive = (fd: number): boolean => {
    if (stats.calls++ === 0) stats.firstCall = performance.now();
    const ok = realTryLock.call(n, fd);
    if (ok) {
      stats.grants.push(performance.now());
      onGrant?.();
    }
    return ok;
  };
  t.teardown(() => {
    n.tryLockExclusive = realTryLock;
  });
  return stats;
}

function connectError(sock: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const c = net.connect(sock);
    c.once('connect', () => {
      c.destroy();
      resolve(undefined);
    });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.test('idle: exit is called once, after the linger and the settle, not before', async (t) => {
  const f = await fixture(t);
  const spy = spyTryLock(t);
  const t0 = performance.now();
  let asked = 0;
  f.idle.arm(() => {
    asked++;
    return true;
  });
  t.ok(await waitFor(() => f.exits.length > 0, LINGER_MS + SETTLE_MS + SLACK_MS), 'exit called');
  t.ok(spy.firstCall - t0 >= LINGER_MS - EARLY_MS, `the lock was not even tried before the deadline (${Math.round(spy.firstCall - t0)} ms)`);
  const elapsed = f.exits[0]! - t0;
  t.ok(elapsed >= LINGER_MS + SETTLE_MS - EARLY_MS, `exit after linger + settle (${Math.round(elapsed)} ms >= ${LINGER_MS + SETTLE_MS})`);
  t.ok(elapsed <= LINGER_MS + SETTLE_MS + SLACK_MS, `and not much later (${Math.round(elapsed)} ms)`);
  t.equal(spy.grants.length, 1, 'the lock was taken once');
  t.ok(f.exits[0]! - spy.grants[0]! >= SETTLE_MS - EARLY_MS, 'exit came a full settle after the lock was taken');
  t.equal(asked, 2, 'isIdle asked at the deadline and again at the end of the settle');
  t.equal(lockHeldElsewhere(f.lockDir), true, 'the exiting daemon keeps the lock (it goes with the process)');
  await sleep(LINGER_MS + 200);
  t.equal(f.exits.length, 1, 'exit called exactly once');
});

t.test('after exit the listener no longer accepts', async (t) => {
  const f = await fixture(t, 100);
  await f.connect(); // a client from before arm: it does not keep the daemon
  f.idle.arm(() => true);
  t.ok(await waitFor(() => f.exits.length === 1, 100 + SETTLE_MS + SLACK_MS), 'exit called');
  t.equal(f.server.listening, false, 'the server stopped listening');
  const code = await connectError(f.sock);
  t.ok(code === 'ECONNREFUSED' || code === 'ENOENT', `a new connection is refused (${code})`);
});

t.test('a connection during the linger postpones the exit by a whole linger', async (t) => {
  const f = await fixture(t);
  const t0 = performance.now();
  f.idle.arm(() => true);
  await sleep(LINGER_MS / 2);
  const tc = await f.connect();
  t.ok(tc - t0 < LINGER_MS, `the connection came during the linger (${Math.round(tc - t0)} ms after arm)`);
  t.ok(await waitFor(() => f.exits.length > 0, LINGER_MS + SETTLE_MS + SLACK_MS), 'exit called in the end');
  const sinceConnect = f.exits[0]! - tc;
  t.ok(f.exits[0]! - t0 > LINGER_MS + SETTLE_MS, 'not at the original deadline');
  t.ok(sinceConnect >= LINGER_MS + SETTLE_MS - EARLY_MS, `exit a linger + settle after the connection (${Math.round(sinceConnect)} ms)`);
  await sleep(200);
  t.equal(f.exits.length, 1, 'exit called exactly once');
});

t.test('a connection before arm does not count; several during the linger keep pushing the deadline', async (t) => {
  const f = await fixture(t);
  await f.connect(); // no timer yet: nothing to push back
  const t0 = performance.now();
  f.idle.arm(() => true);
  let last = t0;
  let maxGap = 0;
  for (let i = 0; i < 4; i++) {
    await sleep(LINGER_MS / 2);
    const at = await f.connect();
    maxGap = Math.max(maxGap, at - last);
    last = at;
  }
  t.ok(maxGap < LINGER_MS, `connections came within a linger of each other (largest gap ${Math.round(maxGap)} ms)`);
  t.equal(f.exits.length, 0, `no exit while connections keep coming (${Math.round(last - t0)} ms > linger)`);
  t.ok(await waitFor(() => f.exits.length > 0, LINGER_MS + SETTLE_MS + SLACK_MS), 'exit once they stop');
  t.ok(f.exits[0]! - last >= LINGER_MS + SETTLE_MS - EARLY_MS, 'a full linger after the last one');
});

t.test('not idle at the deadline: no exit, no lock taken, and a later arm works', async (t) => {
  const f = await fixture(t);
  const spy = spyTryLock(t);
  let idle = false;
  let asked = 0;
  f.idle.arm(() => {
    asked++;
    return idle;
  });
  await sleep(LINGER_MS + SETTLE_MS + 300);
  t.equal(asked, 1, 'isIdle asked once, at the deadline');
  t.equal(f.exits.length, 0, 'no exit: a container came meanwhile');
  t.equal(spy.calls, 0, 'the lock was not tried');
  t.equal(lockHeldElsewhere(f.lockDir), false, 'and is free');
  t.equal(fdsOn(f.lockDir), 0, 'no fd left open on the lock directory');

  idle = true; // the container went, but nobody armed again: nothing happens by itself
  await sleep(LINGER_MS + SETTLE_MS + 200);
  t.equal(f.exits.length, 0, 'no exit without a new arm (the next Shutdown arms)');
  t.equal(asked, 1, 'no timer was left running');

  const t1 = performance.now();
  f.idle.arm(() => idle);
  t.ok(await waitFor(() => f.exits.length > 0, LINGER_MS + SETTLE_MS + SLACK_MS), 'exit after the second arm');
  t.ok(f.exits[0]! - t1 >= LINGER_MS + SETTLE_MS - EARLY_MS, 'a linger + settle after it');
  t.equal(spy.grants.length, 1, 'one lock taken');
});

t.test('not idle any more at the end of the settle: no exit, the lock is released, re-armed', async (t) => {
  const f = await fixture(t);
  let idle = true;
  const spy = spyTryLock(t, () => {
    idle = false; // a Create lands while the decision holds the lock
  });
  let asked = 0;
  f.idle.arm(() => {
    asked++;
    return idle;
  });
  t.ok(await waitFor(() => spy.grants.length === 1, LINGER_MS + SLACK_MS), 'the decision took the lock');
  await sleep(SETTLE_MS + 100);
  t.equal(f.exits.length, 0, 'no exit');
  t.equal(lockHeldElsewhere(f.lockDir), false, 'the lock was released');
  t.equal(fdsOn(f.lockDir), 0, 'its fd closed');
  await sleep(LINGER_MS + 100);
  t.equal(asked, 3, 'asked at the deadline, after the settle, and again at the re-armed deadline');
  t.equal(f.exits.length, 0, 'still no exit');
  t.equal(spy.calls, 1, 'the re-armed deadline found it busy and did not lock');
});

t.test('the lock held by someone else: no exit while held, exit soon after release', async (t) => {
  const f = await fixture(t);
  const spy = spyTryLock(t);
  const mine = openDir(f.lockDir); // a different open file description: flock conflicts
  n.lockExclusive(mine);
  let released = false;
  t.teardown(() => {
    if (!released) fs.closeSync(mine);
  });
  const t0 = performance.now();
  f.idle.arm(() => true);
  await sleep(LINGER_MS + 500);
  t.equal(f.exits.length, 0, 'no exit while `start` holds the lock');
  t.ok(spy.calls >= 2, `the decision retried without blocking the event loop (${spy.calls} tries in ${Math.round(performance.now() - t0)} ms)`);
  t.equal(spy.grants.length, 0, 'never granted');
  t.equal(fdsOn(f.lockDir), 1, 'failed tries closed their fds (only ours is open)');

  const tr = performance.now();
  fs.closeSync(mine);
  released = true;
  t.ok(await waitFor(() => f.exits.length > 0, SLACK_MS), 'exit after the release');
  const after = f.exits[0]! - tr;
  t.ok(after >= SETTLE_MS - EARLY_MS, `still a full settle after taking the lock (${Math.round(after)} ms)`);
  t.ok(after <= 100 + SETTLE_MS + SLACK_MS, 'within a retry + settle (plus slack)');
  t.equal(f.exits.length, 1, 'once');
});

t.test('a connection after the lock was taken, before the settle ends: no exit, lock released, re-armed', async (t) => {
  const f = await fixture(t);
  let heldAtConnect: boolean | undefined;
  const spy = spyTryLock(t, () => {
    if (spy.grants.length !== 1) return;
    // Right after the deadline's decision took the lock: a `start` that probed just before
    // (its connect is queued in the kernel now) and has not been accepted yet.
    heldAtConnect = lockHeldElsewhere(f.lockDir);
    f.connectNow();
  });
  f.idle.arm(() => true);
  t.ok(await waitFor(() => spy.grants.length >= 1, LINGER_MS + SLACK_MS), 'the decision took the lock');
  const locked = spy.grants[0]!;
  t.equal(heldAtConnect, true, 'the lock was held when the connection came');
  await sleep(locked + SETTLE_MS + 100 - performance.now());
  // Before the re-armed deadline (a linger after the settle) nothing holds the lock.
  if (stillBefore(t, locked + SETTLE_MS + LINGER_MS, 'lock released after the settle')) {
    t.equal(lockHeldElsewhere(f.lockDir), false, 'the lock was released for the next start');
    t.equal(fdsOn(f.lockDir), 0, 'its fd closed');
  }
  t.ok(await waitFor(() => f.exits.length > 0, LINGER_MS + SETTLE_MS + SLACK_MS), 'exit at the re-armed deadline');
  t.equal(spy.grants.length, 2, 'the lock was taken a second time for it');
  const fromLock = f.exits[0]! - locked;
  t.ok(f.exits[0]! - locked > SETTLE_MS, 'no exit at the end of the first settle: it saw the connection');
  t.ok(fromLock >= SETTLE_MS + LINGER_MS + SETTLE_MS - EARLY_MS, `re-armed for a full linger (${Math.round(fromLock)} ms after the first lock)`);
  await sleep(200);
  t.equal(f.exits.length, 1, 'once');
});

t.test('a probe reserves the daemon for the connection its start announced, however short the linger', async (t) => {
  // The race the churn test of shim-grouping found: a start probes (the daemon is alive), hands the
  // address to containerd and exits; a daemon with a 1 ms linger decided to exit before
  // containerd connected. Without the reservation the exit comes a linger + settle after the probe.
  const LINGER = 20;
  const f = await fixture(t, LINGER, 1500);
  f.idle.arm(() => true);
  const probed = await f.probe();
  await sleep(LINGER + SETTLE_MS + 400);
  if (stillBefore(t, probed + 1500, 'reserved after the probe')) {
    t.equal(f.exits.length, 0, 'no exit while the probe\'s connection may still come');
  }
  const c = f.connectNow(); // containerd's connection: it speaks
  await new Promise<void>((res) => c.once('connect', () => res()));
  c.write(Buffer.from([0]));
  await sleep(50);
  const spoke = performance.now();
  t.ok(await waitFor(() => f.exits.length > 0, LINGER + SETTLE_MS + SLACK_MS), 'exit once the announced connection came (and the daemon is idle)');
  t.ok(f.exits[0]! - probed < 1500, `before the reservation would have run out (${Math.round(f.exits[0]! - probed)} ms after the probe)`);
  t.ok(f.exits[0]! >= spoke - 60, 'and only after that connection spoke');
});

t.test('a probe nobody follows: the reservation runs out, then the daemon exits', async (t) => {
  const RESERVATION = 600;
  const f = await fixture(t, 20, RESERVATION);
  f.idle.arm(() => true);
  const probed = await f.probe();
  t.ok(await waitFor(() => f.exits.length > 0, RESERVATION + SETTLE_MS + SLACK_MS), 'exit in the end');
  t.ok(f.exits[0]! - probed >= RESERVATION - EARLY_MS, `not before the reservation ran out (${Math.round(f.exits[0]! - probed)} ms >= ${RESERVATION})`);
});

t.test('a probe during the settle (queued before the lock) reserves the daemon too', async (t) => {
  const LINGER = 20;
  let probed = 0;
  const f = await fixture(t, LINGER, 1500);
  const probing: Promise<number>[] = [];
  spyTryLock(t, () => {
    if (probing.length === 0) probing.push(f.probe()); // the first decision only
  });
  f.idle.arm(() => true);
  await waitFor(() => probing.length > 0, LINGER + SLACK_MS);
  probed = await probing[0]!;
  await sleep(SETTLE_MS + LINGER + 300);
  if (stillBefore(t, probed + 1500, 'reserved after the probe')) {
    t.equal(f.exits.length, 0, 'no exit: the probe came while the decision held the lock');
  }
  t.equal(lockHeldElsewhere(f.lockDir), false, 'the lock was released');
  t.ok(await waitFor(() => f.exits.length > 0, 1500 + SETTLE_MS + SLACK_MS), 'exit once the reservation ran out');
  t.ok(f.exits[0]! - probed >= 1500 - EARLY_MS, `not before (${Math.round(f.exits[0]! - probed)} ms after the probe)`);
});
