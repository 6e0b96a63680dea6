// The ttrpc envelope messages (ttrpc.Request, ttrpc.Response, google.rpc.Status), loaded from
// our own two .proto files only, so this module does not depend on the rest of proto/.
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { PROTO_DIR } from '../proto';

export const TTRPC_PROTO_FILES = ['google/rpc/status.proto', 'ttrpc/ttrpc.proto'];

export interface KeyValue {
  key: string;
  value: string;
}

export interface RequestMessage {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Relative deadline in nanoseconds, 0 for none (int64 on the wire). */
  timeout_nano: number;
  metadata: KeyValue[];
}

export interface StatusMessage {
  code: number;
  message: string;
}

export interface ResponseMessage {
  status?: StatusMessage;
  payload: Uint8Array;
}

interface Types {
  request: protobuf.Type;
  response: protobuf.Type;
}

let types: Types | undefined;

function load(): Types {
  if (!types) {
    const root = new protobuf.Root();
    // google/protobuf/* come bundled with protobufjs; our files live in proto/.
    root.resolvePath = (_origin, target) =>
      target.startsWith('google/protobuf/') || path.isAbsolute(target) ? target : path.join(PROTO_DIR, target);
    root.loadSync(TTRPC_PROTO_FILES, { keepCase: true });
    root.resolveAll();
    types = { request: root.lookupType('ttrpc.Request'), response: root.lookupType('ttrpc.Response') };
  }
  return types;
}

/** The loaded protobuf types, for tests and tools. */
export function ttrpcTypes(): { request: protobuf.Type; response: protobuf.Type } {
  return load();
}

/** A decoded bytes field as a Buffer (an absent field reads as protobufjs' default, an empty array). */
function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return Buffer.from((v as number[] | null | undefined) ?? []);
}

/** int64 fields decode as Long (the `long` package is present) or number; we want a number. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  const long = v as { toNumber?: () => number } | null | undefined;
  if (long && typeof long.toNumber === 'function') return long.toNumber();
  return Number(v ?? 0);
}

// Encoders leave out fields that hold their proto3 default, as Go's generated marshallers do, so
// our frames are byte-identical to Go ttrpc's.

export function encodeRequest(req: RequestMessage): Buffer {
  const m: Record<string, unknown> = {};
  if (req.service) m.service = req.service;
  if (req.method) m.method = req.method;
  if (req.payload.length > 0) m.payload = req.payload;
  if (req.timeout_nano) m.timeout_nano = req.timeout_nano;
  if (req.metadata.length > 0) m.metadata = req.metadata.map(keyValue);
  return toBuffer(load().request.encode(m).finish());
}

function keyValue(kv: KeyValue): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  if (kv.key) m.key = kv.key;
  if (kv.value) m.value = kv.value;
  return m;
}

/** Throws on a payload that is not a valid Request encoding. */
export function decodeRequest(p: Uint8Array): RequestMessage {
  const m = load().request.decode(p) as unknown as Record<string, unknown>;
  return {
    service: m.service as string,
    method: m.method as string,
    payload: toBuffer(m.payload),
    timeout_nano: toNumber(m.timeout_nano),
    metadata: (m.metadata as KeyValue[]).map((kv) => ({ key: kv.key, value: kv.value })),
  };
}

/** A present status is always written (Go sends an empty Status for OK), with default fields left out. */
export function encodeResponse(res: ResponseMessage): Buffer {
  const m: Record<string, unknown> = {};
  if (res.status) {
    const st: Record<string, unknown> = {};
    if (res.status.code) st.code = res.status.code;
    if (res.status.message) st.message = res.status.message;
    m.status = st;
  }
  if (res.payload.length > 0) m.payload = res.payload;
  return toBuffer(load().response.encode(m).finish());
}

/** Throws on a payload that is not a valid Response encoding. A missing status reads as OK. */
export function decodeResponse(p: Uint8Array): { status: StatusMessage; payload: Buffer } {
  const m = load().response.decode(p) as unknown as Record<string, unknown>;
  const st = m.status as { code: number; message: string } | null | undefined;
  return {
    status: st ? { code: st.code, message: st.message } : { code: 0, message: '' },
    payload: toBuffer(m.payload),
  };
}
