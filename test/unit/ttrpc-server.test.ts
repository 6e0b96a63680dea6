// The ttrpc server over real unix sockets: well-formed calls from our client and malformed input
// written as raw frames with net.Socket. Ports the cases of containerd/ttrpc server_test.go.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Code,
  FrameReader,
  HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  MessageType,
  TtrpcClient,
  TtrpcError,
  TtrpcServer,
  encodeFrame,
  encodeHeader,
  type CallContext,
  type FrameHeader,
  type Handler,
} from '../../shim/framework/ttrpc';
import { decodeResponse, encodeRequest } from '../../shim/framework/ttrpc/messages';

// Any unhandled rejection or exception fails the run.
process.on('unhandledRejection', (err) => {
  throw err;
});

interface Env {
  sock: string;
  server: TtrpcServer;
  listener: net.Server;
}

async function setup(t: Test, methods: Record<string, Handler> = {}, opts?: ConstructorParameters<typeof TtrpcServer>[0]): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-ttrpc-'));
  const sock = path.join(dir, 'ttrpc.sock');
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(sock, resolve));
  const server = new TtrpcServer(opts);
  server.register('testService', { Test: echoTwice, ...methods });
  server.serve(listener);
  t.teardown(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { sock, server, listener };
}

/** Go's testingServer: doubles the payload. */
const echoTwice: Handler = async (p) => Buffer.concat([p, p]);

function request(service: string, method: string, payload: Buffer | string = '', extra: { timeout_nano?: number } = {}): Buffer {
  return encodeRequest({
    service,
    method,
    payload: Buffer.from(payload),
    timeout_nano: extra.timeout_nano ?? 0,
    metadata: [],
  });
}

/** A hand-driven connection: writes raw bytes, collects response frames. */
class Raw {
  readonly socket: net.Socket;
  private readonly reader = new FrameReader();
  private readonly frames: Array<{ header: FrameHeader; payload: Buffer }> = [];
  private waiters: Array<() => void> = [];
  ended = false;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('data', (c: Buffer) => {
      for (const ev of this.reader.push(c)) {
        if (ev.kind === 'frame') this.frames.push(ev);
      }
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static connect(sock: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path: sock, allowHalfOpen: true });
      s.once('error', reject);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new Raw(s));
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async until(cond: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50).unref();
      });
    }
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  send(id: number, body: Buffer, type: number = MessageType.Request): void {
    this.write(encodeFrame(id, type, body));
  }

  /** Next response frame, decoded. */
  async next(): Promise<{ id: number; type: number; flags: number; code: number; message: string; payload: Buffer }> {
    await this.until(() => this.frames.length > 0 || this.closed);
    const f = this.frames.shift();
    if (!f) throw new Error('connection closed before a response');
    const res = decodeResponse(f.payload);
    return { id: f.header.streamId, type: f.header.type, flags: f.header.flags, ...res.status, payload: res.payload };
  }

  async waitEnd(): Promise<void> {
    await this.until(() => this.ended || this.closed);
  }

  get received(): number {
    return this.frames.length;
  }
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for condition');
    await sleep(5);
  }
}

function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
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

// ---------------------------------------------------------------------------------------------
// Well-formed traffic

t.test('TestServer: round trip over a unix socket', async (t) => {
  const { sock, server } = await setup(t);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const [a, b] = await Promise.all([
    client.call('testService', 'Test', Buffer.from('bar')),
    client.call('testService', 'Test', Buffer.from('baz')),
  ]);
  t.equal(a.toString(), 'barbar');
  t.equal(b.toString(), 'bazbaz');
  t.equal(server.connectionCount, 1);
});

t.test('raw response frame: same stream id, type 2, flags 0, status OK encoded as Go does', async (t) => {
  const { sock } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'Test', 'ab'));
  const r = await raw.next();
  t.same(
    { id: r.id, type: r.type, flags: r.flags, code: r.code, payload: r.payload.toString() },
    { id: 1, type: MessageType.Response, flags: 0, code: 0, payload: 'abab' },
  );
  raw.socket.destroy();
});

t.test('1000 concurrent calls on one connection', async (t) => {
  const { sock } = await setup(t, {
    Slow: async (p) => {
      await sleep(Number(p.toString()) % 7);
      return p;
    },
  });
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => client.call('testService', 'Slow', Buffer.from(String(i)))));
  t.ok(results.every((r, i) => r.toString() === String(i)), 'every call got its own answer');
  t.equal(client.pendingCount, 0);
});

t.test('responses are written as handlers complete (out of order)', async (t) => {
  const gates = [deferred(), deferred(), deferred()];
  const { sock } = await setup(t, {
    Gate: async (p) => {
      await gates[Number(p.toString())].promise;
      return p;
    },
  });
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'Gate', '0'));
  raw.send(3, request('testService', 'Gate', '1'));
  raw.send(5, request('testService', 'Gate', '2'));
  await sleep(20);
  t.equal(raw.received, 0, 'nothing answered while all handlers wait');
  gates[2].resolve();
  t.equal((await raw.next()).id, 5);
  gates[0].resolve();
  t.equal((await raw.next()).id, 1);
  gates[1].resolve();
  t.equal((await raw.next()).id, 3);
  raw.socket.destroy();
});

t.test('TestServerUnimplemented: unknown service or method', async (t) => {
  const { sock } = await setup(t);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const e1 = await rejection(client.call('Not', 'Found', Buffer.alloc(0)));
  t.same({ code: e1.code, message: e1.message }, { code: Code.Unimplemented, message: 'service Not' });
  const e2 = await rejection(client.call('testService', 'Found', Buffer.alloc(0)));
  t.same({ code: e2.code, message: e2.message }, { code: Code.Unimplemented, message: 'method Found' });
  const e3 = await rejection(client.call('testService', 'constructor', Buffer.alloc(0)));
  t.equal(e3.code, Code.Unimplemented, 'no prototype lookups');
});

t.test('handler errors become status codes', async (t) => {
  const { sock } = await setup(t, {
    NotFound: async () => {
      throw new TtrpcError(Code.NotFound, 'container x not found');
    },
    Plain: async () => {
      throw new Error('boom');
    },
    Sync: (() => {
      throw new Error('sync boom');
    }) as Handler,
    Str: async () => {
      throw 'a string'; // eslint-disable-line no-throw-literal
    },
    NoPayload: (async () => undefined) as unknown as Handler,
  });
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const cases: Array<[string, Code, string]> = [
    ['NotFound', Code.NotFound, 'container x not found'],
    ['Plain', Code.Unknown, 'boom'],
    ['Sync', Code.Unknown, 'sync boom'],
    ['Str', Code.Unknown, 'a string'],
    ['NoPayload', Code.Internal, 'ttrpc: handler returned no payload'],
  ];
  for (const [method, code, message] of cases) {
    const e = await rejection(client.call('testService', method, Buffer.alloc(0)));
    t.same({ code: e.code, message: e.message }, { code, message }, method);
  }
  t.equal((await client.call('testService', 'Test', Buffer.from('x'))).toString(), 'xx', 'connection still serves');
});

t.test('metadata reaches the handler as Map<string, string[]>', async (t) => {
  let seen: Map<string, string[]> | undefined;
  const { sock } = await setup(t, {
    Md: async (p, ctx) => {
      seen = ctx.metadata;
      return Buffer.from(ctx.metadata.get('containerd-namespace-ttrpc')?.[0] ?? '');
    },
  });
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const out = await client.call('testService', 'Md', Buffer.alloc(0), {
    metadata: { 'containerd-namespace-ttrpc': 'k8s.io', multi: ['a', 'b'] },
  });
  t.equal(out.toString(), 'k8s.io');
  t.same(
    [...(seen ?? [])],
    [
      ['containerd-namespace-ttrpc', ['k8s.io']],
      ['multi', ['a', 'b']],
    ],
  );
  await client.call('testService', 'Md', Buffer.alloc(0));
  t.equal(seen?.size, 0, 'no metadata, empty map');
});

t.test('TestServerRequestTimeout: timeout_nano gives a deadline and an aborting signal', async (t) => {
  let ctxSeen: CallContext | undefined;
  const { sock } = await setup(t, {
    Deadline: async (_p, ctx) => {
      ctxSeen = ctx;
      return Buffer.from(String(ctx.deadline ?? 'none'));
    },
    WaitAbort: async (_p, ctx) => {
      const start = Date.now();
      if (!ctx.signal.aborted) await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      const reason = ctx.signal.reason as TtrpcError;
      return Buffer.from(JSON.stringify({ waited: Date.now() - start, code: reason.code }));
    },
  });
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());

  const before = Date.now();
  const dl = Number((await client.call('testService', 'Deadline', Buffer.alloc(0), { timeoutMs: 600_000 })).toString());
  t.ok(dl >= before + 600_000 - 5 && dl <= Date.now() + 600_000 + 5, `deadline ${dl - before}ms ahead`);
  t.equal(ctxSeen?.signal.aborted, false);

  t.equal((await client.call('testService', 'Deadline', Buffer.alloc(0))).toString(), 'none', 'no timeout, no deadline');

  // Raw request so that the client does not give up first: 80ms deadline, no client timer.
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'WaitAbort', '', { timeout_nano: 80e6 }));
  const r = await raw.next();
  const body = JSON.parse(r.payload.toString()) as { waited: number; code: number };
  t.ok(body.waited >= 60 && body.waited < 2000, `aborted after ${body.waited}ms`);
  t.equal(body.code, Code.DeadlineExceeded);

  // Negative timeout: like Go's context.WithTimeout, already expired.
  raw.send(3, request('testService', 'WaitAbort', '', { timeout_nano: -1 }));
  t.equal(JSON.parse((await raw.next()).payload.toString()).code, Code.DeadlineExceeded);
  raw.socket.destroy();
});

t.test('handler whose deadline passes can answer DeadlineExceeded by rethrowing the reason', async (t) => {
  const { sock } = await setup(t, {
    Rethrow: async (_p, ctx) => {
      await new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      return Buffer.alloc(0);
    },
  });
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'Rethrow', '', { timeout_nano: 10e6 }));
  const r = await raw.next();
  t.same({ code: r.code, message: r.message }, { code: Code.DeadlineExceeded, message: 'context deadline exceeded' });
  raw.socket.destroy();
});

t.test('duplicate registration throws', async (t) => {
  const server = new TtrpcServer();
  server.register('a', {});
  t.throws(() => server.register('a', {}), /duplicate service a registered/);
  t.throws(() => server.register('b', { M: 1 as unknown as Handler }), TypeError);
});

// ---------------------------------------------------------------------------------------------
// Malformed input

t.test('oversized frame (4 MiB + 1, bytes sent) -> ResourceExhausted, next request answered', async (t) => {
  const { sock, server } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.send(1, Buffer.alloc(MESSAGE_LENGTH_MAX + 1, 0x61));
  raw.send(3, request('testService', 'Test', 'ok'));
  const r1 = await raw.next();
  t.same(
    { id: r1.id, code: r1.code, message: r1.message },
    { id: 1, code: Code.ResourceExhausted, message: `message length ${MESSAGE_LENGTH_MAX + 1} exceed maximum message size of ${MESSAGE_LENGTH_MAX}` },
  );
  const r2 = await raw.next();
  t.same({ id: r2.id, code: r2.code, payload: r2.payload.toString() }, { id: 3, code: 0, payload: 'okok' });
  t.equal(server.connectionCount, 1, 'connection kept');
  raw.socket.destroy();
});

t.test('TestOversizeCall: oversized request through the client is ResourceExhausted', async (t) => {
  const { sock } = await setup(t);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const e = await rejection(client.call('testService', 'Test', Buffer.alloc(MESSAGE_LENGTH_MAX + 1)));
  t.equal(e.code, Code.ResourceExhausted);
  t.equal((await client.call('testService', 'Test', Buffer.from('y'))).toString(), 'yy');
});

t.test('huge declared length then EOF -> ResourceExhausted, then the server closes', async (t) => {
  const { sock, server } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.write(encodeHeader({ length: 0xfffffff0, streamId: 7, type: MessageType.Request, flags: 0 }));
  raw.write(Buffer.alloc(1000));
  const r = await raw.next();
  t.same({ id: r.id, code: r.code }, { id: 7, code: Code.ResourceExhausted });
  t.match(r.message, /message length 4294967280 exceed maximum message size of 4194304/);
  raw.socket.end();
  await raw.waitEnd();
  t.ok(raw.ended || raw.closed, 'server closed its side');
  await waitFor(() => server.connectionCount === 0);
  t.equal(server.connectionCount, 0);
});

t.test('frames of unknown type are ignored (Data, 0x7f), an oversized one is still answered', async (t) => {
  const { sock } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'Test', 'x'), MessageType.Data);
  raw.send(3, Buffer.from('whatever'), 0x7f);
  raw.send(5, Buffer.from('resp'), MessageType.Response);
  raw.write(encodeHeader({ length: MESSAGE_LENGTH_MAX + 10, streamId: 9, type: 0x7f, flags: 0 }));
  raw.write(Buffer.alloc(MESSAGE_LENGTH_MAX + 10));
  raw.send(11, request('testService', 'Test', 'z'));
  const r1 = await raw.next();
  t.same({ id: r1.id, code: r1.code }, { id: 9, code: Code.ResourceExhausted }, 'Go checks the size before the type');
  const r2 = await raw.next();
  t.same({ id: r2.id, payload: r2.payload.toString() }, { id: 11, payload: 'zz' });
  await sleep(20);
  t.equal(raw.received, 0, 'nothing answered for ignored frames');
  raw.socket.destroy();
});

t.test('garbage payload -> InvalidArgument on its stream, connection keeps going', async (t) => {
  const { sock } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.send(1, Buffer.from([0xff, 0xff, 0xff, 0xff]));
  raw.send(3, request('testService', 'Test', 'a'));
  const r1 = await raw.next();
  t.equal(r1.id, 1);
  t.equal(r1.code, Code.InvalidArgument);
  t.match(r1.message, /^unmarshal request error: /);
  const r2 = await raw.next();
  t.same({ id: r2.id, code: r2.code, payload: r2.payload.toString() }, { id: 3, code: 0, payload: 'aa' });
  raw.socket.destroy();
});

t.test('even stream id -> InvalidArgument (after the payload decodes, as in Go)', async (t) => {
  const { sock } = await setup(t);
  const raw = await Raw.connect(sock);
  raw.send(2, request('testService', 'Test', 'a'));
  raw.send(0, request('testService', 'Test', 'a'));
  raw.send(4, Buffer.from([0xff, 0xff]));
  raw.send(5, request('testService', 'Test', 'b'));
  const rs = [await raw.next(), await raw.next(), await raw.next(), await raw.next()];
  t.same(
    rs.map((r) => [r.id, r.code]),
    [
      [2, Code.InvalidArgument],
      [0, Code.InvalidArgument],
      [4, Code.InvalidArgument],
      [5, Code.OK],
    ],
  );
  t.equal(rs[0].message, 'StreamID must be odd for client initiated streams');
  t.match(rs[2].message, /^unmarshal request error/);
  raw.socket.destroy();
});

for (const [name, cut] of [
  ['truncated header', 4],
  ['truncated payload', HEADER_LENGTH + 3],
] as const) {
  t.test(`${name} then EOF: connection closed cleanly, server keeps serving`, async (t) => {
    const { sock, server } = await setup(t);
    const raw = await Raw.connect(sock);
    raw.write(encodeFrame(1, MessageType.Request, request('testService', 'Test', 'abcdef')).subarray(0, cut));
    await sleep(10);
    raw.socket.end();
    await raw.waitEnd();
    t.equal(raw.received, 0, 'no answer to a partial frame');
    await waitFor(() => server.connectionCount === 0);
    t.equal(server.connectionCount, 0);
    const client = await TtrpcClient.connect(sock);
    t.equal((await client.call('testService', 'Test', Buffer.from('q'))).toString(), 'qq');
    client.close();
  });
}

t.test('EOF with requests in flight: they are still answered, then the server ends', async (t) => {
  const gate = deferred();
  const { sock, server } = await setup(t, {
    Gate: async (p) => {
      await gate.promise;
      return p;
    },
  });
  const raw = await Raw.connect(sock);
  raw.send(1, request('testService', 'Gate', 'late'));
  await sleep(10);
  raw.socket.end();
  await sleep(20);
  t.equal(server.connectionCount, 1, 'kept open for the in-flight request');
  gate.resolve();
  const r = await raw.next();
  t.same({ id: r.id, payload: r.payload.toString() }, { id: 1, payload: 'late' });
  await raw.waitEnd();
  await waitFor(() => server.connectionCount === 0);
  t.pass('closed after the last response');
});

t.test('a connection sending garbage does not disturb another client', async (t) => {
  const { sock } = await setup(t);
  const bad = await Raw.connect(sock);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  let stop = false;
  let badFrames = 0;
  const noise = (async () => {
    while (!stop) {
      bad.send(1, Buffer.from([0xff, 0xfe, 0xfd]));
      bad.send(2, request('x', 'y'));
      bad.write(encodeHeader({ length: MESSAGE_LENGTH_MAX + 1, streamId: 3, type: 1, flags: 0 }));
      bad.write(Buffer.alloc(MESSAGE_LENGTH_MAX + 1));
      bad.send(5, Buffer.from('junk'), 0x42);
      badFrames += 4;
      await sleep(1);
    }
  })();
  const results = [];
  for (let i = 0; i < 50; i++) {
    results.push(...(await Promise.all(Array.from({ length: 10 }, (_, j) => client.call('testService', 'Test', Buffer.from(`${i}.${j}`))))));
  }
  stop = true;
  await noise;
  t.equal(results.length, 500);
  t.ok(results.every((r, k) => r.toString() === `${Math.floor(k / 10)}.${k % 10}`.repeat(2)), 'all answered correctly');
  t.ok(badFrames > 0);
  await waitFor(() => bad.received >= 3);
  const r = await bad.next();
  t.equal(r.code, Code.InvalidArgument, 'the bad connection got its error statuses');
  bad.socket.destroy();
});

t.test('too large a response is answered with ResourceExhausted', async (t) => {
  const { sock } = await setup(t, { Big: async () => Buffer.alloc(MESSAGE_LENGTH_MAX) });
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  const e = await rejection(client.call('testService', 'Big', Buffer.alloc(0)));
  t.equal(e.code, Code.ResourceExhausted);
  t.match(e.message, /exceed maximum message size of 4194304/);
});

t.test('backpressure: a peer that does not read stops the server reading requests', async (t) => {
  let handled = 0;
  const { sock } = await setup(t, {
    Mega: async () => {
      handled++;
      return Buffer.alloc(1 << 20, 0x6d);
    },
  });
  const raw = await Raw.connect(sock);
  raw.socket.pause();
  for (let i = 0; i < 60; i++) {
    raw.send(2 * i + 1, request('testService', 'Mega'));
    await sleep(3);
  }
  await sleep(100);
  t.ok(handled < 20, `only ${handled} of 60 requests read while responses are not consumed`);
  raw.socket.resume();
  await waitFor(() => raw.received === 60, 20000);
  const ids = new Set<number>();
  for (let i = 0; i < 60; i++) {
    const r = await raw.next();
    if (r.code === 0 && r.payload.length === 1 << 20) ids.add(r.id);
  }
  t.equal(ids.size, 60, 'every response delivered once the peer reads');
  t.equal(handled, 60);
  raw.socket.destroy();
});

// ---------------------------------------------------------------------------------------------
// Lifecycle

t.test('TestServerShutdown: waits for in-flight requests, then closes every connection', async (t) => {
  const proceed = deferred();
  let started = 0;
  const { sock, server } = await setup(t, {
    Wait: async () => {
      started++;
      await proceed.promise;
      return Buffer.from('waited');
    },
  });
  const client = await TtrpcClient.connect(sock);
  const idle = await TtrpcClient.connect(sock); // secondary connection
  const calls = Array.from({ length: 5 }, () => client.call('testService', 'Wait', Buffer.alloc(0)));
  await waitFor(() => started === 5);
  let finished = false;
  const shut = server.shutdown().then(() => (finished = true));
  await waitFor(() => idle.closed);
  t.ok(idle.closed, 'idle connection closed at once');
  await sleep(50);
  t.equal(finished, false, 'shutdown waits for in-flight handlers');
  t.equal(client.closed, false);
  await t.rejects(TtrpcClient.connect(sock), 'no longer accepting');
  proceed.resolve();
  const results = await Promise.all(calls);
  t.ok(results.every((r) => r.toString() === 'waited'), 'in-flight calls answered');
  await shut;
  t.equal(server.connectionCount, 0);
  await waitFor(() => client.closed);
  t.ok(client.closed, 'busy connection closed after its last response');
});

t.test('shutdown with nothing connected resolves at once; serve after it throws', async (t) => {
  const { server, listener } = await setup(t);
  await server.shutdown();
  t.equal(listener.listening, false, 'listener closed');
  t.throws(() => server.serve(net.createServer()), /server closed/);
});

t.test('TestServerClose: close is immediate, aborts handlers, pending calls reject Unavailable', async (t) => {
  let aborted: unknown;
  const { sock, server } = await setup(t, {
    Hang: (_p, ctx) =>
      new Promise((_resolve, reject) =>
        ctx.signal.addEventListener('abort', () => {
          aborted = ctx.signal.reason;
          reject(ctx.signal.reason);
        }),
      ),
  });
  const client = await TtrpcClient.connect(sock);
  const p = client.call('testService', 'Hang', Buffer.alloc(0));
  await sleep(20);
  server.close();
  const e = await rejection(p);
  t.equal(e.code, Code.Unavailable);
  await waitFor(() => aborted !== undefined);
  t.equal((aborted as TtrpcError).code, Code.Canceled);
  await waitFor(() => server.connectionCount === 0);
  t.equal(server.connectionCount, 0);
});

t.test('TestServerConnectionsLeak: a closed client is removed', async (t) => {
  const { sock, server } = await setup(t);
  t.equal(server.connectionCount, 0);
  const client = await TtrpcClient.connect(sock);
  await client.call('testService', 'Test', Buffer.alloc(0));
  t.equal(server.connectionCount, 1);
  client.close();
  await waitFor(() => server.connectionCount === 0);
  t.equal(server.connectionCount, 0);
});

t.test('TestServerListenerClosed: closing the listener stops accepting, existing connection kept', async (t) => {
  const { sock, listener, server } = await setup(t);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => client.close());
  listener.close(); // its callback would wait for every connection to end
  t.equal(listener.listening, false);
  await t.rejects(TtrpcClient.connect(sock));
  t.equal((await client.call('testService', 'Test', Buffer.from('k'))).toString(), 'kk');
  t.equal(server.connectionCount, 1);
});

t.test('accept hook can refuse a connection (peer credential check)', async (t) => {
  let seen = 0;
  const { sock, server } = await setup(t, {}, {
    accept: () => {
      seen++;
      return seen > 1;
    },
  });
  const refused = await TtrpcClient.connect(sock);
  const e = await rejection(refused.call('testService', 'Test', Buffer.alloc(0)));
  t.equal(e.code, Code.Unavailable);
  const ok = await TtrpcClient.connect(sock);
  t.equal((await ok.call('testService', 'Test', Buffer.from('o'))).toString(), 'oo');
  ok.close();
  t.equal(seen, 2);
  t.ok(server.connectionCount <= 1);
});

t.test('logger receives warnings, debug for handler failures', async (t) => {
  const debug: string[] = [];
  const { sock } = await setup(t, { Fail: async () => { throw new Error('x'); } }, {
    logger: { warn: () => {}, debug: (_o, msg) => debug.push(msg ?? '') },
  });
  const client = await TtrpcClient.connect(sock);
  await rejection(client.call('testService', 'Fail', Buffer.alloc(0)));
  client.close();
  t.ok(debug.includes('ttrpc: handler failed'));
});
