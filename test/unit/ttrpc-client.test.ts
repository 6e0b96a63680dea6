// The ttrpc client against a hand-driven fake server (raw frames over a unix socket) and against
// our server. Ports containerd/ttrpc client_test.go and the client halves of server_test.go.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Code,
  FrameReader,
  MESSAGE_LENGTH_MAX,
  MessageType,
  TtrpcClient,
  TtrpcError,
  TtrpcServer,
  encodeFrame,
  encodeHeader,
  type FrameHeader,
} from '../../shim/framework/ttrpc';
import { decodeRequest, encodeResponse, type RequestMessage } from '../../shim/framework/ttrpc/messages';

process.on('unhandledRejection', (err) => {
  throw err;
});

function tmpSock(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-ttrpc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'ttrpc.sock');
}

interface Received {
  header: FrameHeader;
  req: RequestMessage;
}

/** A fake server: records request frames; the test answers them by hand. */
class FakeServer {
  readonly requests: Received[] = [];
  conn: net.Socket | undefined;
  private constructor(readonly listener: net.Server) {
    listener.on('connection', (s: net.Socket) => {
      this.conn = s;
      s.on('error', () => {});
      const reader = new FrameReader();
      s.on('data', (c: Buffer) => {
        for (const ev of reader.push(c)) if (ev.kind === 'frame') this.requests.push({ header: ev.header, req: decodeRequest(ev.payload) });
      });
    });
  }

  static async start(t: Test, sock: string): Promise<FakeServer> {
    const l = net.createServer();
    await new Promise<void>((resolve) => l.listen(sock, resolve));
    const f = new FakeServer(l);
    t.teardown(() => {
      f.conn?.destroy();
      l.close();
    });
    return f;
  }

  async waitRequests(n: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (this.requests.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.requests.length} requests arrived`);
      await sleep(2);
    }
  }

  respond(id: number, status: { code: number; message: string }, payload: Buffer = Buffer.alloc(0), type: number = MessageType.Response): void {
    this.conn?.write(encodeFrame(id, type, encodeResponse({ status, payload })));
  }

  raw(b: Buffer): void {
    this.conn?.write(b);
  }
}

async function rejection(p: Promise<unknown>): Promise<TtrpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof TtrpcError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

const OK = { code: 0, message: '' };

t.test('stream ids are odd and increasing from 1; request fields as sent', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(`unix://${sock}`);
  t.teardown(() => client.close());
  const calls = [0, 1, 2, 3].map((i) => client.call('svc', `M${i}`, Buffer.from(`p${i}`)));
  await fake.waitRequests(4);
  t.same(
    fake.requests.map((r) => r.header.streamId),
    [1, 3, 5, 7],
  );
  t.same(
    fake.requests.map((r) => [r.header.type, r.header.flags]),
    [
      [1, 0],
      [1, 0],
      [1, 0],
      [1, 0],
    ],
  );
  t.same(
    fake.requests.map((r) => [r.req.service, r.req.method, Buffer.from(r.req.payload).toString(), r.req.timeout_nano]),
    [0, 1, 2, 3].map((i) => ['svc', `M${i}`, `p${i}`, 0]),
  );
  // Answer out of order; each call gets its own payload.
  for (const id of [7, 1, 5, 3]) fake.respond(id, OK, Buffer.from(`r${id}`));
  t.same(
    (await Promise.all(calls)).map((b) => b.toString()),
    ['r1', 'r3', 'r5', 'r7'],
  );
});

t.test('client sends timeout_nano and metadata', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const p = client.call('svc', 'M', Buffer.alloc(0), {
    timeoutMs: 1500,
    metadata: { 'containerd-namespace-ttrpc': 'default', multi: ['x', 'y'] },
  });
  await fake.waitRequests(1);
  const req = fake.requests[0].req;
  t.equal(req.timeout_nano, 1_500_000_000);
  t.same(req.metadata, [
    { key: 'containerd-namespace-ttrpc', value: 'default' },
    { key: 'multi', value: 'x' },
    { key: 'multi', value: 'y' },
  ]);
  fake.respond(1, OK);
  t.equal((await p).length, 0);
});

t.test('client timeout: DeadlineExceeded, the late response is ignored, the connection goes on', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const start = Date.now();
  const e = await rejection(client.call('svc', 'Slow', Buffer.alloc(0), { timeoutMs: 50 }));
  t.same({ code: e.code, message: e.message }, { code: Code.DeadlineExceeded, message: 'context deadline exceeded' });
  t.ok(Date.now() - start >= 45, 'not before the timeout');
  t.equal(client.pendingCount, 0);
  const next = client.call('svc', 'Fast', Buffer.alloc(0));
  await fake.waitRequests(2);
  fake.respond(1, OK, Buffer.from('late'));
  fake.respond(3, OK, Buffer.from('fast'));
  t.equal((await next).toString(), 'fast');
  t.equal(client.closed, false);
  const e0 = await rejection(client.call('svc', 'Zero', Buffer.alloc(0), { timeoutMs: 0 }));
  t.equal(e0.code, Code.DeadlineExceeded, 'an expired deadline fails at once');
});

t.test('abort signal cancels a call', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const ac = new AbortController();
  const p = client.call('svc', 'M', Buffer.alloc(0), { signal: ac.signal });
  await fake.waitRequests(1);
  ac.abort();
  t.equal((await rejection(p)).code, Code.Canceled);
  t.equal((await rejection(client.call('svc', 'M', Buffer.alloc(0), { signal: ac.signal }))).code, Code.Canceled, 'already aborted');
});

t.test('error status becomes TtrpcError with the code and message', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const p = client.call('svc', 'M', Buffer.alloc(0));
  await fake.waitRequests(1);
  fake.respond(1, { code: Code.AlreadyExists, message: 'id x: already exists' });
  const e = await rejection(p);
  t.same({ code: e.code, message: e.message }, { code: Code.AlreadyExists, message: 'id x: already exists' });
});

t.test('odd responses: unknown stream, wrong type, garbage, oversized are handled per stream', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const p1 = client.call('svc', 'Garbage', Buffer.alloc(0));
  const p3 = client.call('svc', 'Oversized', Buffer.alloc(0));
  const p5 = client.call('svc', 'Good', Buffer.alloc(0));
  await fake.waitRequests(3);
  fake.respond(99, OK, Buffer.from('nobody asked'));
  fake.respond(5, OK, Buffer.from('wrong type'), MessageType.Data);
  fake.raw(encodeFrame(1, MessageType.Response, Buffer.from([0x0a, 0x09])));
  fake.raw(encodeHeader({ length: MESSAGE_LENGTH_MAX + 1, streamId: 3, type: MessageType.Response, flags: 0 }));
  fake.raw(Buffer.alloc(MESSAGE_LENGTH_MAX + 1));
  fake.respond(5, OK, Buffer.from('good'));
  const e1 = await rejection(p1);
  t.equal(e1.code, Code.Internal);
  t.match(e1.message, /failed to unmarshal response/);
  const e3 = await rejection(p3);
  t.equal(e3.code, Code.ResourceExhausted);
  t.equal((await p5).toString(), 'good', 'stream stayed in sync');
  t.equal(client.closed, false);
});

t.test('pending calls reject Unavailable when the server closes; onClose fires', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  let closes = 0;
  client.onClose(() => closes++);
  const calls = [client.call('svc', 'A', Buffer.alloc(0)), client.call('svc', 'B', Buffer.alloc(0), { timeoutMs: 60_000 })];
  await fake.waitRequests(2);
  fake.raw(encodeFrame(1, MessageType.Response, Buffer.alloc(0)).subarray(0, 6)); // and a truncated frame
  await sleep(10);
  fake.conn?.end();
  for (const p of calls) {
    const e = await rejection(p);
    t.same({ code: e.code, message: e.message }, { code: Code.Unavailable, message: 'ttrpc: closed' });
  }
  t.equal(client.closed, true);
  t.equal(closes, 1);
  t.equal(client.pendingCount, 0);
  const late = await rejection(client.call('svc', 'C', Buffer.alloc(0)));
  t.equal(late.code, Code.Unavailable, 'calls after close fail at once');
  let after = 0;
  client.onClose(() => after++);
  await sleep(1);
  t.equal(after, 1, 'onClose after close runs too');
});

t.test('close() rejects pending calls and is idempotent', async (t) => {
  const sock = tmpSock(t);
  const fake = await FakeServer.start(t, sock);
  const client = await TtrpcClient.connect(sock);
  const p = client.call('svc', 'A', Buffer.alloc(0));
  await fake.waitRequests(1);
  client.close();
  client.close();
  t.equal((await rejection(p)).code, Code.Unavailable);
  t.equal(client.closed, true);
});

t.test('connect to a missing socket rejects Unavailable', async (t) => {
  const sock = tmpSock(t);
  const e = await rejection(TtrpcClient.connect(sock, { timeoutMs: 1000 }));
  t.equal(e.code, Code.Unavailable);
  t.match(e.message, /ENOENT/);
});

t.test('a client built on an already connected socket', async (t) => {
  const sock = tmpSock(t);
  const server = new TtrpcServer();
  server.register('svc', { Echo: async (p) => p });
  const l = net.createServer();
  await new Promise<void>((resolve) => l.listen(sock, resolve));
  server.serve(l);
  t.teardown(() => server.close());
  const s = net.createConnection(sock);
  await new Promise((resolve) => s.once('connect', resolve));
  const client = new TtrpcClient(s);
  t.equal((await client.call('svc', 'Echo', Buffer.from('e'))).toString(), 'e');
  client.close();
});

// client_test.go: TestUserOnCloseWait
t.test('TestUserOnCloseWait: onClose runs when the client is closed', async (t) => {
  const sock = tmpSock(t);
  const server = new TtrpcServer();
  server.register('testService', { Test: async (p) => p });
  const l = net.createServer();
  await new Promise<void>((resolve) => l.listen(sock, resolve));
  server.serve(l);
  t.teardown(() => server.close());
  const client = await TtrpcClient.connect(sock);
  let closedAt = 0;
  client.onClose(() => (closedAt = Date.now()));
  await client.call('testService', 'Test', Buffer.alloc(0));
  t.equal(closedAt, 0, 'not before close');
  client.close();
  t.ok(closedAt > 0, 'after close');
});

// server_test.go: TestClientEOF
t.test('TestClientEOF: calls after the server closed fail with Unavailable', async (t) => {
  const sock = tmpSock(t);
  const server = new TtrpcServer();
  server.register('testService', { Test: async (p) => p });
  const l = net.createServer();
  await new Promise<void>((resolve) => l.listen(sock, resolve));
  server.serve(l);
  const client = await TtrpcClient.connect(sock);
  await client.call('testService', 'Test', Buffer.alloc(0));
  server.close();
  let err: TtrpcError | undefined;
  for (let i = 0; i < 100 && !err; i++) {
    try {
      await client.call('testService', 'Test', Buffer.alloc(0));
      await sleep(5);
    } catch (e) {
      err = e as TtrpcError;
    }
  }
  t.ok(err instanceof TtrpcError);
  t.equal(err?.code, Code.Unavailable);
  t.equal(client.closed, true);
});
