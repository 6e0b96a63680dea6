// The ttrpc envelope messages and status codes must match what Go ttrpc puts on the wire:
// field numbers and types are compared with the struct tags of ttrpc's types.go, google.rpc.Status
// with googleapis' status.proto, and the codes with grpc's codes.go, all as Debian installs them.
import t from 'tap';
import * as fs from 'node:fs';
import * as protobuf from 'protobufjs';
import { Code, TtrpcError, codeName, isTtrpcError, statusOf } from '../../shim/framework/ttrpc';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  ttrpcTypes,
} from '../../shim/framework/ttrpc/messages';

const GOCODE = '/usr/share/gocode/src';
const TYPES_GO = `${GOCODE}/github.com/containerd/ttrpc/types.go`;
const STATUS_PROTO = `${GOCODE}/github.com/gogo/googleapis/google/rpc/status.proto`;
const CODES_GO = `${GOCODE}/google.golang.org/grpc/codes/codes.go`;

/** struct name -> [{number, name, wire kind}] from `protobuf:"bytes,1,opt,name=service,proto3"` tags. */
function goStructs(src: string): Map<string, Array<{ id: number; name: string; kind: string; repeated: boolean }>> {
  const out = new Map<string, Array<{ id: number; name: string; kind: string; repeated: boolean }>>();
  const structRe = /type (\w+) struct \{([^}]*)\}/g;
  for (let m = structRe.exec(src); m; m = structRe.exec(src)) {
    const fields = [];
    const tagRe = /protobuf:"(\w+),(\d+),(opt|rep|req),name=(\w+)/g;
    for (let f = tagRe.exec(m[2]); f; f = tagRe.exec(m[2])) {
      fields.push({ id: Number(f[2]), name: f[4], kind: f[1], repeated: f[3] === 'rep' });
    }
    out.set(m[1], fields);
  }
  return out;
}

/** Go's wire kind for a protobufjs field type. */
function wireKind(field: protobuf.Field): string {
  if (['int32', 'int64', 'uint32', 'uint64', 'bool', 'enum'].includes(field.type)) return 'varint';
  return 'bytes'; // string, bytes, messages
}

t.test('Request, Response, KeyValue match ttrpc types.go', async (t) => {
  const src = fs.readFileSync(TYPES_GO, 'utf8'); // fails the test if the Debian package is missing
  const go = goStructs(src);
  const root = ttrpcTypes().request.root;
  for (const name of ['Request', 'Response', 'KeyValue']) {
    const ours = root.lookupType(`ttrpc.${name}`);
    const theirs = go.get(name);
    t.ok(theirs, `${name} in types.go`);
    t.same(
      ours.fieldsArray.map((f) => ({ id: f.id, name: f.name, kind: wireKind(f), repeated: f.repeated })).sort((a, b) => a.id - b.id),
      theirs,
      `${name} fields`,
    );
  }
  const req = root.lookupType('ttrpc.Request');
  t.equal(req.fields.timeout_nano.type, 'int64');
  t.equal(req.fields.payload.type, 'bytes');
  t.equal(req.fields.metadata.type, 'KeyValue');
  t.equal(root.lookupType('ttrpc.Response').fields.status.resolvedType?.fullName, '.google.rpc.Status');
});

t.test('google.rpc.Status matches googleapis status.proto', async (t) => {
  const upstream = protobuf.parse(fs.readFileSync(STATUS_PROTO, 'utf8'), { keepCase: true }).root;
  const theirs = upstream.lookupType('google.rpc.Status');
  const ours = ttrpcTypes().response.root.lookupType('google.rpc.Status');
  const shape = (ty: protobuf.Type): unknown =>
    ty.fieldsArray.map((f) => ({ id: f.id, name: f.name, type: f.type, rule: f.repeated ? 'repeated' : 'optional' }));
  t.same(shape(ours), shape(theirs));
});

t.test('status codes match grpc codes.go', async (t) => {
  const src = fs.readFileSync(CODES_GO, 'utf8');
  const goCodes: Record<string, number> = {};
  for (const m of src.matchAll(/^\s+(\w+)\s+Code = (\d+)$/gm)) goCodes[m[1]] = Number(m[2]);
  t.equal(Object.keys(goCodes).length, 17);
  const ours: Record<string, number> = {};
  for (const [k, v] of Object.entries(Code)) if (typeof v === 'number') ours[k] = v;
  t.same(ours, goCodes);
  t.equal(codeName(Code.ResourceExhausted), 'ResourceExhausted');
  t.equal(codeName(99), 'Code(99)');
});

t.test('TtrpcError and statusOf', async (t) => {
  const e = new TtrpcError(Code.NotFound, 'container x');
  t.ok(e instanceof Error);
  t.ok(isTtrpcError(e));
  t.notOk(isTtrpcError(new Error('x')));
  t.equal(e.name, 'TtrpcError');
  t.equal(e.code, 5);
  t.equal(e.message, 'container x');
  t.equal(String(e), 'rpc error: code = NotFound desc = container x');
  t.same(statusOf(e), { code: Code.NotFound, message: 'container x' });
  t.same(statusOf(new Error('boom')), { code: Code.Unknown, message: 'boom' });
  t.same(statusOf('plain'), { code: Code.Unknown, message: 'plain' });
});

t.test('encoders write the same bytes as Go: default fields left out', async (t) => {
  const req = encodeRequest({ service: 's', method: 'm', payload: Buffer.alloc(0), timeout_nano: 0, metadata: [] });
  t.same([...req], [0x0a, 1, 0x73, 0x12, 1, 0x6d]);
  const full = encodeRequest({
    service: 's',
    method: 'm',
    payload: Buffer.from([0xff]),
    timeout_nano: 1,
    metadata: [{ key: 'k', value: '' }],
  });
  t.same([...full], [0x0a, 1, 0x73, 0x12, 1, 0x6d, 0x1a, 1, 0xff, 0x20, 1, 0x2a, 3, 0x0a, 1, 0x6b]);
  // OK: Go marshals status.New(codes.OK, "").Proto(), a present but empty Status.
  t.same([...encodeResponse({ status: { code: 0, message: '' }, payload: Buffer.alloc(0) })], [0x0a, 0]);
  t.same(
    [...encodeResponse({ status: { code: 12, message: 'x' }, payload: Buffer.from('p') })],
    [0x0a, 5, 0x08, 12, 0x12, 1, 0x78, 0x12, 1, 0x70],
  );
});

t.test('decoders: round trip, int64 beyond 32 bits, absent fields', async (t) => {
  const tenMinutes = 10 * 60 * 1e9;
  const req = decodeRequest(
    encodeRequest({
      service: 'svc',
      method: 'M',
      payload: Buffer.from('abc'),
      timeout_nano: tenMinutes,
      metadata: [
        { key: 'a', value: '1' },
        { key: 'a', value: '2' },
      ],
    }),
  );
  t.equal(req.timeout_nano, tenMinutes);
  t.equal(typeof req.timeout_nano, 'number');
  t.ok(Buffer.isBuffer(req.payload));
  t.equal(req.payload.toString(), 'abc');
  t.same(req.metadata, [
    { key: 'a', value: '1' },
    { key: 'a', value: '2' },
  ]);
  const empty = decodeRequest(Buffer.alloc(0));
  t.same({ ...empty, payload: [...empty.payload] }, { service: '', method: '', payload: [], timeout_nano: 0, metadata: [] });
  const neg = decodeRequest(encodeRequest({ service: '', method: '', payload: Buffer.alloc(0), timeout_nano: -5, metadata: [] }));
  t.equal(neg.timeout_nano, -5);

  const res = decodeResponse(Buffer.alloc(0));
  t.same(res.status, { code: 0, message: '' }, 'absent status reads as OK');
  t.ok(Buffer.isBuffer(res.payload));
  t.equal(res.payload.length, 0);
  t.throws(() => decodeRequest(Buffer.from([0xff, 0xff, 0xff])));
  t.throws(() => decodeResponse(Buffer.from([0x0a, 0x09])));
});
