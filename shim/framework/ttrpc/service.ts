// Typed layer over protobufjs service definitions: handlers and callers see plain objects with
// the proto's snake_case field names; the envelope below stays bytes. Decoded objects carry
// defaults, int64 as number, enums as numbers, bytes as Buffer, Timestamps as {seconds, nanos};
// objects to encode may also give a Timestamp as a Date.
import type * as protobuf from 'protobufjs';
import { Code, TtrpcError } from './codes';
import type { CallOptions, TtrpcClient } from './client';
import type { CallContext, Handler, TtrpcServer } from './server';

/** How messages are turned into plain objects on both sides. */
export const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = {
  defaults: true,
  longs: Number,
  enums: Number,
  bytes: Buffer as unknown as protobuf.IConversionOptions['bytes'],
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TypedHandler = (req: any, ctx: CallContext) => Promise<object>;

/** The name a service is registered and called under: its full name without the leading dot. */
export function serviceName(def: protobuf.Service): string {
  return def.fullName.replace(/^\./, '');
}

interface ResolvedMethod {
  name: string;
  request: protobuf.Type;
  response: protobuf.Type;
}

function resolveMethod(def: protobuf.Service, name: string): ResolvedMethod | undefined {
  const m = Object.prototype.hasOwnProperty.call(def.methods, name) ? def.methods[name] : undefined;
  if (!m) return undefined;
  m.resolve();
  if (!m.resolvedRequestType || !m.resolvedResponseType) throw new Error(`ttrpc: ${serviceName(def)}/${name}: unresolved types`);
  return { name, request: m.resolvedRequestType, response: m.resolvedResponseType };
}

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** protobuf bytes -> plain object; throws what it got from protobufjs. */
function decodePlain(type: protobuf.Type, p: Uint8Array): Record<string, unknown> {
  return type.toObject(type.decode(p), TO_OBJECT_OPTIONS) as Record<string, unknown>;
}

function encodePlain(type: protobuf.Type, obj: object): Buffer {
  return toBuffer(type.encode(type.fromObject(withTimestamps(type, obj as Record<string, unknown>))).finish());
}

const TIMESTAMP = '.google.protobuf.Timestamp';

/** Date -> {seconds, nanos} (protobufjs' fromObject would silently turn a Date into 0). */
function dateToTimestamp(d: Date): { seconds: number; nanos: number } {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

/** A copy of obj with every Date found in a google.protobuf.Timestamp field converted, at any depth. */
function withTimestamps(type: protobuf.Type, obj: Record<string, unknown>): Record<string, unknown> {
  let out = obj;
  for (const field of type.fieldsArray) {
    const v = obj[field.name];
    const sub = field.resolvedType;
    if (v === null || v === undefined || !sub || !('fieldsArray' in sub)) continue;
    const conv = (x: unknown): unknown => {
      if (x instanceof Date) return sub.fullName === TIMESTAMP ? dateToTimestamp(x) : x;
      return x && typeof x === 'object' && !Buffer.isBuffer(x) ? withTimestamps(sub as protobuf.Type, x as Record<string, unknown>) : x;
    };
    let nv: unknown;
    if (field.map) nv = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, conv(x)]));
    else if (field.repeated && Array.isArray(v)) nv = v.map(conv);
    else nv = conv(v);
    if (nv !== v) {
      if (out === obj) out = { ...obj };
      out[field.name] = nv;
    }
  }
  return out;
}

/**
 * Register `impl` for the methods of `def` (under its full name unless opts.name). `impl` may be a
 * plain object or a class instance; `this` is `impl` in each call. Methods of the definition
 * without an implementation answer Unimplemented; in a plain object, a key the definition lacks
 * is a programming error and throws here.
 */
export function bindService(
  server: TtrpcServer,
  def: protobuf.Service,
  impl: Record<string, TypedHandler> | object,
  opts: { name?: string } = {},
): void {
  const name = opts.name ?? serviceName(def);
  // A plain object literal holds only handlers, so a key the definition lacks is a typo. (A class
  // instance may carry helpers of its own; its methods are found through its prototype.)
  const proto = Object.getPrototypeOf(impl) as unknown;
  if (proto === Object.prototype || proto === null) {
    for (const key of Object.keys(impl)) {
      if (!resolveMethod(def, key)) throw new Error(`ttrpc: ${name} has no method ${key}`);
    }
  }
  const handlers: Record<string, Handler> = {};
  for (const methodName of Object.keys(def.methods)) {
    const fn = (impl as Record<string, unknown>)[methodName];
    if (typeof fn !== 'function') continue; // answered Unimplemented by the server
    const m = resolveMethod(def, methodName) as ResolvedMethod;
    const call = fn as TypedHandler;
    handlers[methodName] = async (payload, ctx) => {
      let req: Record<string, unknown>;
      try {
        req = decodePlain(m.request, payload);
      } catch (err) {
        throw new TtrpcError(Code.Internal, `ttrpc: error unmarshalling payload: ${(err as Error).message}`);
      }
      const res = await call.call(impl, req, ctx);
      if (res === null || res === undefined) throw new TtrpcError(Code.Unknown, 'ttrpc: marshal called with nil');
      try {
        return encodePlain(m.response, res);
      } catch (err) {
        throw new TtrpcError(Code.Internal, `ttrpc: error marshaling payload: ${(err as Error).message}`);
      }
    };
  }
  server.register(name, handlers);
}

/** Call `method` of `def` with a plain request object; resolves to the plain response object. */
export async function typedCall(
  client: TtrpcClient,
  def: protobuf.Service,
  method: string,
  req: object,
  opts: CallOptions & { name?: string } = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<any> {
  const m = resolveMethod(def, method);
  if (!m) throw new TtrpcError(Code.Unimplemented, `method ${method}`);
  let payload: Buffer;
  try {
    payload = encodePlain(m.request, req);
  } catch (err) {
    throw new TtrpcError(Code.Internal, `ttrpc: error marshaling payload: ${(err as Error).message}`);
  }
  const out = await client.call(opts.name ?? serviceName(def), method, payload, opts);
  try {
    return decodePlain(m.response, out);
  } catch (err) {
    throw new TtrpcError(Code.Internal, `ttrpc: error unmarshalling payload: ${(err as Error).message}`);
  }
}
