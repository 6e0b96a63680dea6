// The typed layer: bindService/typedCall over a protobufjs service definition, with plain
// snake_case objects on both sides. Ports TestServer's testingService (payload doubled, deadline
// and metadata echoed) from containerd/ttrpc server_test.go.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import {
  Code,
  TtrpcClient,
  TtrpcError,
  TtrpcServer,
  bindService,
  serviceName,
  typedCall,
  type CallContext,
} from '../../shim/framework/ttrpc';

process.on('unhandledRejection', (err) => {
  throw err;
});

const PROTO = `
syntax = "proto3";
package ttrpc.test.v1;
import "google/protobuf/empty.proto";
import "google/protobuf/timestamp.proto";

enum Kind { KIND_UNSPECIFIED = 0; KIND_A = 1; KIND_B = 2; }

message TestPayload {
  string foo = 1;
  int64 deadline = 2;
  string metadata = 3;
  bytes raw_data = 4;
  Kind kind = 5;
  repeated string list_items = 6;
  uint32 exit_status = 7;
  google.protobuf.Timestamp exited_at = 8;
  repeated Nested nested = 9;
}

message Nested {
  google.protobuf.Timestamp at = 1;
}

service TestService {
  rpc Test(TestPayload) returns (TestPayload);
  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);
  rpc NotImplementedHere(TestPayload) returns (TestPayload);
}
`;

function loadService(): protobuf.Service {
  const root = new protobuf.Root();
  root.loadSync(['google/protobuf/empty.proto', 'google/protobuf/timestamp.proto']); // bundled with protobufjs
  protobuf.parse(PROTO, root, { keepCase: true });
  root.resolveAll();
  return root.lookupService('ttrpc.test.v1.TestService');
}

async function setup(t: Test, register: (server: TtrpcServer, def: protobuf.Service) => void): Promise<{ client: TtrpcClient; def: protobuf.Service }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-ttrpc-'));
  const sock = path.join(dir, 'ttrpc.sock');
  const def = loadService();
  const server = new TtrpcServer();
  register(server, def);
  const l = net.createServer();
  await new Promise<void>((resolve) => l.listen(sock, resolve));
  server.serve(l);
  const client = await TtrpcClient.connect(sock);
  t.teardown(() => {
    client.close();
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { client, def };
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

interface TestPayload {
  foo: string;
  deadline: number;
  metadata: string;
  raw_data: Buffer;
  kind: number;
  list_items: string[];
  exit_status: number;
  exited_at: { seconds: number; nanos: number } | null;
  nested: Array<{ at: { seconds: number; nanos: number } | null }>;
}

const testingServer = {
  async Test(req: TestPayload, ctx: CallContext): Promise<object> {
    return {
      foo: req.foo.repeat(2),
      deadline: ctx.deadline !== undefined ? ctx.deadline * 1e6 : 0,
      metadata: ctx.metadata.get('foo')?.[0] ?? '',
    };
  },
  async Ping(): Promise<object> {
    return {};
  },
};

t.test('serviceName drops the leading dot', async (t) => {
  t.equal(serviceName(loadService()), 'ttrpc.test.v1.TestService');
});

t.test('TestServer via typed calls: payload doubled, metadata and deadline seen by the handler', async (t) => {
  const { client, def } = await setup(t, (s, d) => bindService(s, d, testingServer));
  const res = (await typedCall(client, def, 'Test', { foo: 'bar' }, { metadata: { foo: 'bar' } })) as TestPayload;
  t.same(res, { foo: 'barbar', deadline: 0, metadata: 'bar', raw_data: Buffer.alloc(0), kind: 0, list_items: [], exit_status: 0, exited_at: null, nested: [] }, 'defaults present');
  const before = Date.now();
  const withDl = (await typedCall(client, def, 'Test', { foo: 'x' }, { timeoutMs: 600_000 })) as TestPayload;
  const dlMs = withDl.deadline / 1e6;
  t.ok(dlMs >= before + 600_000 - 5 && dlMs <= Date.now() + 600_000 + 5, 'deadline ~10 minutes ahead');
  t.same(await typedCall(client, def, 'Ping', {}), {});
});

t.test('handlers see plain snake_case objects: int64 as number, bytes as Buffer, enums as numbers', async (t) => {
  let seen: TestPayload | undefined;
  const { client, def } = await setup(t, (s, d) =>
    bindService(s, d, {
      async Test(req: TestPayload) {
        seen = req;
        return { ...req, exit_status: 137, kind: 'KIND_B' };
      },
    }),
  );
  const res = (await typedCall(client, def, 'Test', {
    foo: 'f',
    deadline: 2 ** 40,
    raw_data: Buffer.from([1, 2, 3]),
    kind: 1,
    list_items: ['a', 'b'],
  })) as TestPayload;
  t.ok(seen);
  t.equal(seen?.deadline, 2 ** 40);
  t.equal(typeof seen?.deadline, 'number');
  t.ok(Buffer.isBuffer(seen?.raw_data));
  t.same([...(seen?.raw_data ?? [])], [1, 2, 3]);
  t.equal(seen?.kind, 1);
  t.same(seen?.list_items, ['a', 'b']);
  t.equal(seen?.exit_status, 0, 'defaults filled in');
  t.equal(res.exit_status, 137);
  t.equal(res.kind, 2, 'enum names in responses are encoded by fromObject');
  t.ok(Buffer.isBuffer(res.raw_data));
});

t.test('a method of the definition without an impl answers Unimplemented', async (t) => {
  const { client, def } = await setup(t, (s, d) => bindService(s, d, testingServer));
  const e = await rejection(typedCall(client, def, 'NotImplementedHere', {}));
  t.same({ code: e.code, message: e.message }, { code: Code.Unimplemented, message: 'method NotImplementedHere' });
  const e2 = await rejection(typedCall(client, def, 'NoSuchMethod', {}));
  t.equal(e2.code, Code.Unimplemented, 'typedCall of a method the definition lacks');
});

t.test('an impl for a method the definition lacks throws at bind time', async (t) => {
  const server = new TtrpcServer();
  t.throws(() => bindService(server, loadService(), { Tset: async () => ({}) }), /has no method Tset/);
});

t.test('opts.name registers and calls under another name', async (t) => {
  const { client, def } = await setup(t, (s, d) => bindService(s, d, testingServer, { name: 'custom.Name' }));
  const e = await rejection(typedCall(client, def, 'Ping', {}));
  t.same({ code: e.code, message: e.message }, { code: Code.Unimplemented, message: `service ${serviceName(def)}` });
  t.same(await typedCall(client, def, 'Ping', {}, { name: 'custom.Name' }), {});
});

t.test('errors: thrown TtrpcError code, plain error Unknown, nil result, undecodable request', async (t) => {
  let mode = '';
  const { client, def } = await setup(t, (s, d) =>
    bindService(s, d, {
      async Test() {
        if (mode === 'notfound') throw new TtrpcError(Code.NotFound, 'no such thing');
        if (mode === 'plain') throw new Error('plain failure');
        return undefined as unknown as object;
      },
    }),
  );
  mode = 'notfound';
  const e1 = await rejection(typedCall(client, def, 'Test', {}));
  t.same({ code: e1.code, message: e1.message }, { code: Code.NotFound, message: 'no such thing' });
  mode = 'plain';
  const e2 = await rejection(typedCall(client, def, 'Test', {}));
  t.same({ code: e2.code, message: e2.message }, { code: Code.Unknown, message: 'plain failure' });
  mode = 'nil';
  const e3 = await rejection(typedCall(client, def, 'Test', {}));
  t.same({ code: e3.code, message: e3.message }, { code: Code.Unknown, message: 'ttrpc: marshal called with nil' });
  const e4 = await rejection(client.call(serviceName(def), 'Test', Buffer.from([0xff, 0xff, 0xff])));
  t.equal(e4.code, Code.Internal);
  t.match(e4.message, /^ttrpc: error unmarshalling payload: /);
});

t.test('a class instance works as impl: prototype methods found, `this` bound, helpers allowed', async (t) => {
  class Impl {
    private readonly suffix = '!';
    readonly helper = (): string => 'not a method';
    async Test(req: TestPayload): Promise<object> {
      return { foo: req.foo + this.suffix };
    }
  }
  const { client, def } = await setup(t, (s, d) => bindService(s, d, new Impl()));
  t.equal(((await typedCall(client, def, 'Test', { foo: 'hi' })) as TestPayload).foo, 'hi!');
  const e = await rejection(typedCall(client, def, 'Ping', {}));
  t.equal(e.code, Code.Unimplemented);
});

t.test('Timestamps: {seconds, nanos} both ways, a Date accepted when encoding, at any depth', async (t) => {
  let seen: TestPayload | undefined;
  const { client, def } = await setup(t, (s, d) =>
    bindService(s, d, {
      async Test(req: TestPayload) {
        seen = req;
        return { exited_at: new Date(1700000000123), nested: [{ at: new Date(5500) }, { at: null }] };
      },
    }),
  );
  const res = (await typedCall(client, def, 'Test', { exited_at: { seconds: 2 ** 33, nanos: 9 }, nested: [{ at: new Date(1001) }] })) as TestPayload;
  t.same(seen?.exited_at, { seconds: 2 ** 33, nanos: 9 });
  t.same(seen?.nested, [{ at: { seconds: 1, nanos: 1_000_000 } }]);
  t.same(res.exited_at, { seconds: 1700000000, nanos: 123_000_000 });
  t.same(res.nested, [{ at: { seconds: 5, nanos: 500_000_000 } }, { at: null }]);
});
