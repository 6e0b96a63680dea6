// RemotePublisher (the event outbox) against a fake containerd: ordering, no drops while
// containerd is unreachable, exactly-once delivery of the backlog, refused events skipped without
// blocking the rest, close(deadline), and the wire payload of Events/Forward.
import t from 'tap';
import { RemotePublisher, toTimestamp } from '../../shim/framework/publisher';
import { silentLogger } from '../../shim/framework/logger';
import { messageType } from '../../shim/framework/proto';
import { Code, TtrpcError, type CallOptions, type TtrpcClient } from '../../shim/framework/ttrpc';

const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';
const ADDRESS = '/run/containerd/containerd.sock.ttrpc';
const TO_OBJECT = { longs: Number, enums: String, bytes: Buffer, defaults: true } as const;

interface Decoded {
  topic: string;
  namespace: string;
  timestamp: { seconds: number; nanos: number };
  typeUrl: string;
  event: Record<string, unknown>;
}

function decodeForward(payload: Uint8Array): Decoded {
  const fwd = messageType('containerd.services.events.ttrpc.v1.ForwardRequest');
  const obj = fwd.toObject(fwd.decode(payload), TO_OBJECT) as {
    envelope: { topic: string; namespace: string; timestamp: { seconds: number; nanos: number }; event: { type_url: string; value: Buffer } };
  };
  const env = obj.envelope;
  const type = messageType(env.event.type_url);
  return {
    topic: env.topic,
    namespace: env.namespace,
    timestamp: env.timestamp,
    typeUrl: env.event.type_url,
    event: type.toObject(type.decode(env.event.value), TO_OBJECT),
  };
}

interface Call {
  service: string;
  method: string;
  payload: Buffer;
  opts: CallOptions | undefined;
  decoded: Decoded;
}

/** A fake containerd: connect may fail, each call goes through `handler`, successful calls are recorded. */
const fakes: FakeContainerd[] = [];
t.afterEach(() => {
  for (const f of fakes.splice(0)) f.freeze();
});

class FakeContainerd {
  constructor() {
    fakes.push(this);
  }

  reachable = true;
  connects = 0;
  attempts: Decoded[] = [];
  delivered: Call[] = [];
  clients: FakeClient[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Decide a call's fate: resolve to deliver, throw to fail. */
  handler: (d: Decoded, n: number) => Promise<void> | void = () => {};

  private frozen = false;

  /**
   * From now on connect never settles. A publisher whose forwarder is still looping when its test
   * ends then waits on a promise instead of a timer, so the test process can exit.
   */
  freeze(): void {
    this.frozen = true;
  }

  readonly connect = async (address: string): Promise<TtrpcClient> => {
    if (this.frozen) return new Promise<TtrpcClient>(() => {});
    this.connects++;
    if (address !== ADDRESS) throw new Error(`connect to unexpected address ${address}`);
    await new Promise((r) => setImmediate(r));
    if (!this.reachable) throw new TtrpcError(Code.Unavailable, `ttrpc: connect ${address}: connect ECONNREFUSED`);
    const c = new FakeClient(this);
    this.clients.push(c);
    return c as unknown as TtrpcClient;
  };

  pids(): number[] {
    return this.delivered.map((c) => c.decoded.event.pid as number);
  }
}

class FakeClient {
  closed = false;
  closeCalls = 0;
  constructor(private readonly server: FakeContainerd) {}

  async call(service: string, method: string, payload: Buffer, opts?: CallOptions): Promise<Buffer> {
    if (this.closed) throw new TtrpcError(Code.Unavailable, 'ttrpc: closed');
    const decoded = decodeForward(payload);
    const s = this.server;
    s.attempts.push(decoded);
    s.inFlight++;
    s.maxInFlight = Math.max(s.maxInFlight, s.inFlight);
    try {
      await s.handler(decoded, s.attempts.length);
      if (!s.reachable) throw new TtrpcError(Code.Unavailable, 'ttrpc: closed');
      s.delivered.push({ service, method, payload, opts, decoded });
      return Buffer.alloc(0);
    } finally {
      s.inFlight--;
    }
  }

  close(): void {
    this.closed = true;
    this.closeCalls++;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(5);
  }
  return cond();
}

function exitEvent(pid: number): object {
  return { container_id: 'c1', id: pid === 1 ? 'c1' : `exec-${pid}`, pid, exit_status: pid % 256, exited_at: toTimestamp(new Date(1_700_000_000_000 + pid)) };
}

function publishExits(p: RemotePublisher, pids: number[]): void {
  for (const pid of pids) p.publish('default', '/tasks/exit', 'containerd.events.TaskExit', exitEvent(pid));
}

const range = (n: number, from = 1): number[] => Array.from({ length: n }, (_, i) => from + i);

t.test('toTimestamp: seconds and non-negative nanos', async (t) => {
  t.same(toTimestamp(new Date(0)), { seconds: 0, nanos: 0 });
  t.same(toTimestamp(new Date(1500)), { seconds: 1, nanos: 500_000_000 });
  t.same(toTimestamp(new Date(1_700_000_000_123)), { seconds: 1_700_000_000, nanos: 123_000_000 });
  t.same(toTimestamp(new Date(-1500)), { seconds: -2, nanos: 500_000_000 });
});

t.test('the payload is a ForwardRequest whose envelope carries topic, namespace, timestamp and the TaskExit', async (t) => {
  const fake = new FakeContainerd();
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  const exitedAt = new Date('2026-03-04T05:06:07.089Z');
  const before = Date.now();
  p.publish('k8s.io', '/tasks/exit', 'containerd.events.TaskExit', {
    container_id: 'ctr-1', id: 'exec-7', pid: 4242, exit_status: 137, exited_at: toTimestamp(exitedAt),
  });
  const after = Date.now();
  t.ok(await waitFor(() => fake.delivered.length === 1, 2000), 'delivered');
  const call = fake.delivered[0];
  t.equal(call.service, EVENTS_SERVICE);
  t.equal(call.method, 'Forward');
  t.same(call.opts?.metadata, { 'containerd-namespace-ttrpc': 'k8s.io' });
  t.ok((call.opts?.timeoutMs ?? 0) > 0, 'the call has a deadline');

  const d = call.decoded;
  t.equal(d.topic, '/tasks/exit');
  t.equal(d.namespace, 'k8s.io');
  t.equal(d.typeUrl, 'containerd.events.TaskExit');
  const ms = d.timestamp.seconds * 1000 + d.timestamp.nanos / 1e6;
  t.ok(ms >= before && ms <= after, `envelope timestamp ${ms} is the publish time [${before}, ${after}]`);
  t.ok(d.timestamp.nanos >= 0 && d.timestamp.nanos < 1e9);
  t.same(d.event, {
    container_id: 'ctr-1',
    id: 'exec-7',
    pid: 4242,
    exit_status: 137,
    exited_at: { seconds: Math.floor(exitedAt.getTime() / 1000), nanos: 89_000_000 },
  });

  // The raw bytes, independently of our decode helper: field 1 (envelope) is length-delimited.
  t.equal(call.payload[0], (1 << 3) | 2);
  await p.close(1000);
});

t.test('other event types use their own type URL', async (t) => {
  const fake = new FakeContainerd();
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  p.publish('default', '/tasks/start', 'containerd.events.TaskStart', { container_id: 'c1', pid: 10 });
  p.publish('default', '/tasks/oom', 'containerd.events.TaskOOM', { container_id: 'c1' });
  t.ok(await waitFor(() => fake.delivered.length === 2, 2000));
  t.same(fake.delivered.map((c) => [c.decoded.topic, c.decoded.typeUrl]), [
    ['/tasks/start', 'containerd.events.TaskStart'],
    ['/tasks/oom', 'containerd.events.TaskOOM'],
  ]);
  t.same(fake.delivered[0].decoded.event, { container_id: 'c1', pid: 10 });
  await p.close(1000);
});

t.test('events leave in publish order, one call at a time, over one connection', async (t) => {
  const fake = new FakeContainerd();
  fake.handler = (_d, n) => sleep(n % 3); // uneven latencies
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(30));
  t.equal(p.pending, 30, 'publish returns at once; all queued');
  t.ok(await waitFor(() => fake.delivered.length === 30, 3000), 'all delivered');
  t.same(fake.pids(), range(30));
  t.equal(fake.maxInFlight, 1, 'never two Forward calls in flight');
  t.equal(fake.connects, 1);
  t.equal(p.pending, 0);
  // publishing after the queue drained starts a new forwarding run
  publishExits(p, [31, 32]);
  t.ok(await waitFor(() => fake.delivered.length === 32, 2000));
  t.same(fake.pids(), range(32));
  await p.close(1000);
});

t.test('publish never throws and never blocks, even for a bad event', async (t) => {
  const fake = new FakeContainerd();
  fake.reachable = false;
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  t.doesNotThrow(() => p.publish('default', '/tasks/exit', 'containerd.events.NoSuchEvent', {}));
  t.doesNotThrow(() => publishExits(p, [1]));
  t.equal(p.pending, 1, 'the unencodable event is refused at publish time; the good one is queued');
  await p.close(50);
});

t.test('while connect fails nothing is dropped; once reachable the backlog arrives in order, exactly once', async (t) => {
  const fake = new FakeContainerd();
  fake.reachable = false;
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(3));
  await sleep(120);
  publishExits(p, range(3, 4)); // more events while unreachable
  await sleep(120);
  t.equal(fake.delivered.length, 0, 'nothing delivered while unreachable');
  t.equal(p.pending, 6, 'nothing dropped');
  t.ok(fake.connects >= 2, `it keeps retrying (${fake.connects} connects)`);
  t.ok(fake.connects < 20, `with backoff, not a busy loop (${fake.connects} connects)`);
  fake.reachable = true;
  t.ok(await waitFor(() => p.pending === 0, 4000), 'backlog drained');
  await sleep(100);
  t.same(fake.pids(), range(6), 'in order, each exactly once');
  t.equal(fake.clients.length, 1, 'one connection once reachable');
  await p.close(1000);
});

t.test('while calls fail with Unavailable nothing is dropped; the client is replaced; exactly once', async (t) => {
  const fake = new FakeContainerd();
  let failing = 4;
  fake.handler = () => {
    if (failing > 0) {
      failing--;
      throw new TtrpcError(Code.Unavailable, 'ttrpc: closed');
    }
  };
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(5));
  t.ok(await waitFor(() => p.pending === 0, 4000), 'drained');
  await sleep(50);
  t.same(fake.pids(), range(5));
  t.same(fake.attempts.slice(0, 5).map((d) => d.event.pid), [1, 1, 1, 1, 1], 'the head is retried, never skipped');
  t.ok(fake.connects >= 2, 'reconnected after Unavailable');
  const open = fake.clients.filter((c) => !c.closed);
  t.equal(open.length, 1, 'failed clients were closed, one remains');
  await p.close(1000);
  t.equal(fake.clients.filter((c) => !c.closed).length, 0, 'close() closes the client');
});

t.test('DeadlineExceeded is transient too: retried, not skipped', async (t) => {
  const fake = new FakeContainerd();
  let failing = 5; // as many as the refusal limit
  fake.handler = () => {
    if (failing > 0) {
      failing--;
      throw new TtrpcError(Code.DeadlineExceeded, 'timed out');
    }
  };
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, [1, 2]);
  t.ok(await waitFor(() => p.pending === 0, 8000), 'drained');
  t.same(fake.pids(), [1, 2]);
  await p.close(1000);
});

t.test('a refused event is retried, then skipped without blocking the rest', async (t) => {
  const fake = new FakeContainerd();
  fake.handler = (d) => {
    if (d.event.pid === 2) throw new TtrpcError(Code.InvalidArgument, 'bad event');
  };
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, [1, 2, 3, 4]);
  t.ok(await waitFor(() => p.pending === 0, 3000), 'the queue moved past the refused event');
  t.same(fake.pids(), [1, 3, 4], 'the rest arrived in order');
  const tries = fake.attempts.filter((d) => d.event.pid === 2).length;
  t.ok(tries >= 2, `the refused event was retried (${tries} tries)`);
  t.ok(tries <= 10, `and given up on (${tries} tries)`);
  t.equal(fake.connects, 1, 'a refusal is not a connection problem');
  await p.close(1000);
});

t.test('an event refused a few times and then accepted is delivered once, in its place', async (t) => {
  const fake = new FakeContainerd();
  let refusals = 2;
  fake.handler = (d) => {
    if (d.event.pid === 2 && refusals > 0) {
      refusals--;
      throw new TtrpcError(Code.Internal, 'try again');
    }
  };
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, [1, 2, 3]);
  t.ok(await waitFor(() => p.pending === 0, 3000));
  t.same(fake.pids(), [1, 2, 3]);
  await p.close(1000);
});

t.test('an event that cannot be encoded does not block the events behind it', async (t) => {
  const fake = new FakeContainerd();
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  p.publish('default', '/tasks/exit', 'containerd.events.NoSuchEvent', { pid: 1 });
  publishExits(p, [2]);
  t.ok(await waitFor(() => fake.delivered.length === 1, 3000), 'the good event behind the bad one is delivered');
  t.same(fake.pids(), [2]);
  await p.close(200);
});

t.test('close(deadline) waits for the queue to drain', async (t) => {
  const fake = new FakeContainerd();
  fake.handler = () => sleep(20);
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(8));
  const t0 = Date.now();
  await p.close(3000);
  const elapsed = Date.now() - t0;
  t.equal(p.pending, 0, 'nothing left');
  t.same(fake.pids(), range(8), 'all delivered before close returned');
  t.ok(elapsed >= 8 * 20 - 10, `it waited for delivery (${elapsed} ms)`);
  t.ok(elapsed < 2000, `and no longer (${elapsed} ms)`);
  t.ok(fake.clients.every((c) => c.closed), 'client closed');
});

t.test('close(deadline) waits for a backlog that becomes deliverable before the deadline', async (t) => {
  const fake = new FakeContainerd();
  fake.reachable = false;
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(3));
  setTimeout(() => { fake.reachable = true; }, 300);
  const t0 = Date.now();
  await p.close(5000);
  t.same(fake.pids(), range(3));
  t.ok(Date.now() - t0 < 4000, 'returned once drained');
});

t.test('close(deadline) returns by the deadline when containerd stays unreachable, and then stops trying', async (t) => {
  const fake = new FakeContainerd();
  fake.reachable = false;
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  publishExits(p, range(2));
  await sleep(20);
  const t0 = Date.now();
  await p.close(300);
  const elapsed = Date.now() - t0;
  t.ok(elapsed >= 280, `waited until the deadline (${elapsed} ms)`);
  t.ok(elapsed < 800, `returned by the deadline (${elapsed} ms)`);
  t.equal(p.pending, 2, 'the undelivered events are still counted');
  t.equal(fake.delivered.length, 0);

  // "retries ... until it is delivered or the shim is told to stop": close() is that stop.
  const connectsAtClose = fake.connects;
  fake.reachable = true;
  await sleep(2500); // longer than the maximum backoff
  t.equal(fake.connects, connectsAtClose, 'no connection attempts after close() returned');
  t.equal(fake.clients.filter((c) => !c.closed).length, 0, 'no client left open after close()');
});

t.test('close() with an empty queue returns at once', async (t) => {
  const fake = new FakeContainerd();
  const p = new RemotePublisher(ADDRESS, silentLogger(), fake.connect);
  const t0 = Date.now();
  await p.close(5000);
  t.ok(Date.now() - t0 < 100);
  t.equal(fake.connects, 0, 'never connected: nothing to send');
});

t.test('without TTRPC_ADDRESS there is nobody to tell: events are discarded, nothing connects', async (t) => {
  const fake = new FakeContainerd();
  const connect = async (a: string): Promise<TtrpcClient> => {
    fake.connects++;
    return fake.connect(a);
  };
  const p = new RemotePublisher('', silentLogger(), connect);
  publishExits(p, range(5));
  await sleep(50);
  t.equal(fake.connects, 0);
  t.equal(p.pending, 0);
  const t0 = Date.now();
  await p.close(5000);
  t.ok(Date.now() - t0 < 100, 'close does not wait');
});
