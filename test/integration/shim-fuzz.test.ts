// Fuzz of the running shim's ttrpc server (issue "Malformed input"): one real shim with a running
// `sleep 1000` container gets at least RUNCTS_FUZZ_FRAMES (default 100 000) random and mutated
// frames on many connections, several at once, opened and closed over the run: random bytes, bad
// and huge declared lengths, unknown message types, even stream ids, truncated frames followed by
// end() or destroy() (half-open), random protobuf in the Request envelope, unknown services and
// methods, real Task methods with random and mutated payloads, and connections that never read.
// Meanwhile a well-formed client on its own connection (a worker thread, so the fuzzer's CPU does
// not count as the shim's latency) calls State and Pids on the container in a loop. Asserted: the
// shim never crashes or stalls (every checked connection gets exactly the answers the protocol
// promises, docs/ttrpc-protocol.md, and is closed by the server after its end()), the
// well-formed client is served throughout (every call succeeds, worst latency under 2 s), the
// shim's RSS stays bounded and its fd count returns to the baseline, and afterwards the shim is
// the same process, the container still RUNNING.
//
// Never sent with the real container id: anything but State/Pids/Stats/Connect (a well-formed
// Kill/Delete/... of it would be legitimate). Never sent at all: Shutdown. Create only with a
// bundle that cannot exist and no checkpoint. Every generated Task request is decoded with the
// shim's own codec and dropped if it breaks these rules (mutations could produce anything).
// RUNCTS_FUZZ_SEED=<n> replays a run's random choices (the seed is printed).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import t, { type Test } from 'tap';
import { messageType } from '../../shim/framework/proto';
import { Code, FrameReader, HEADER_LENGTH, MESSAGE_LENGTH_MAX, MessageType, encodeFrame, encodeHeader } from '../../shim/framework/ttrpc';
import { decodeRequest, decodeResponse, encodeRequest, type KeyValue } from '../../shim/framework/ttrpc/messages';
import { DIRECT_NS, DirectShims, STATUS, TASK, alive, connectShim, procStatus, runShimBinary, waitGone, type DirectShim } from './harness';

const TARGET = Number(process.env.RUNCTS_FUZZ_FRAMES ?? 100_000);
const SEED = Number(process.env.RUNCTS_FUZZ_SEED ?? Math.floor(Math.random() * 0x7fffffff));
/** Fuzz connections open at once (each runs one connection after another). */
const LANES = 6;
/** Half-open connections held idle mid-frame for the whole run. */
const HELD = 8;
/** Connections that flood requests and never read their answers. */
const NO_READ_CONNECTIONS = 6;
/** How long a checked connection may take from its end() to the server's close. */
const CONNECTION_DEADLINE_MS = 30_000;
/** The fuzz stops here even short of its target (and then fails): a stall must not hang the suite. */
const FUZZ_DEADLINE_MS = Number(process.env.RUNCTS_FUZZ_DEADLINE_MS ?? 10 * 60_000);
/** "No stall": the worst latency of the well-formed client. */
const MAX_LATENCY_MS = 2_000;
/**
 * RSS growth allowed over the run. Measured (tap's NODE_OPTIONS, compiled modules): +69 to +74 MiB
 * at both 100 000 and 300 000 frames, i.e. it does not grow with the frame count: the peak comes
 * from the 4 MiB frames (up to LANES partial frames buffered at once, the max-length and
 * oversize-synced ones) and V8's heap headroom. A server without backpressure grows by 345 MiB on
 * the never-reading connections alone (20 000 frames). 160 MiB is about twice the measured peak.
 */
const RSS_GROWTH_MAX_KB = 160 * 1024;

const ID = `fuzz-${process.pid}`;
const SERVICE = 'containerd.task.v2.Task';
/** Every name the shim serves the Task service under (containerd 2.x calls it v3). */
const TASK_SERVICES = [SERVICE, 'containerd.task.v3.Task'];
const NS_KEY = 'containerd-namespace-ttrpc';
const METHODS = Object.keys(TASK.methods);
/** The only methods that may name the real container. */
const SAFE_WITH_REAL_ID = new Set(['State', 'Pids', 'Stats', 'Connect']);
const GARBAGE_BUNDLE = '/nonexistent-runcts-fuzz';

// ---------------------------------------------------------------------------------------------
// Randomness (seeded, so a failing run can be replayed).

class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** mulberry32 */
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (z ^ (z >>> 14)) >>> 0;
  }
  int(n: number): number {
    return n <= 0x100000000 ? Math.floor((this.u32() / 0x100000000) * n) : Math.floor(Math.random() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  /** Mostly short strings; ASCII, arbitrary UTF-8 or raw (possibly invalid UTF-8) bytes. */
  str(max = 40): string {
    const n = this.chance(0.9) ? this.int(Math.min(max, 40) + 1) : this.int(max + 1);
    switch (this.int(3)) {
      case 0: return this.bytes(n).toString('latin1').replace(/[^\x20-\x7e]/g, 'x');
      case 1: return this.bytes(n).toString('utf8');
      default: return String.fromCodePoint(...Array.from({ length: Math.min(n, 20) }, () => this.int(0x10ffff)).filter((c) => c < 0xd800 || c > 0xdfff));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Protobuf building blocks.

function varint(v: bigint | number): Buffer {
  let x = BigInt(v) & 0xffffffffffffffffn;
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}

/** A random field: any field number (1..2^29-1, 0 now and then), any wire type (6 and 7 are invalid). */
function randomField(rng: Rng, depth: number): Buffer {
  const field = rng.chance(0.7) ? rng.range(1, 16) : rng.chance(0.95) ? rng.int(0x20000000) : 0;
  const wire = rng.chance(0.9) ? rng.pick([0, 1, 2, 5]) : rng.int(8);
  const key = varint((BigInt(field) << 3n) | BigInt(wire));
  switch (wire) {
    case 0: return Buffer.concat([key, varint(rng.chance(0.5) ? rng.int(300) : (BigInt(rng.u32()) << 32n) | BigInt(rng.u32()))]);
    case 1: return Buffer.concat([key, rng.bytes(8)]);
    case 5: return Buffer.concat([key, rng.bytes(4)]);
    case 2: {
      const body = depth < 4 && rng.chance(0.3) ? randomProtobuf(rng, depth + 1) : rng.chance(0.5) ? Buffer.from(rng.str(64)) : rng.bytes(rng.int(64));
      // Now and then a declared length that lies (too long, or huge).
      const len = rng.chance(0.9) ? body.length : rng.chance(0.5) ? body.length + rng.range(1, 100) : rng.u32();
      return Buffer.concat([key, varint(len), body]);
    }
    case 3: // start group, maybe closed
      return Buffer.concat([key, depth < 4 ? randomProtobuf(rng, depth + 1) : Buffer.alloc(0), rng.chance(0.7) ? varint((BigInt(field) << 3n) | 4n) : Buffer.alloc(0)]);
    default: // 4 (stray end group), 6, 7: nothing valid follows
      return Buffer.concat([key, rng.bytes(rng.int(8))]);
  }
}

function randomProtobuf(rng: Rng, depth = 0): Buffer {
  const n = rng.int(depth === 0 ? 10 : 4) + (depth === 0 ? 1 : 0);
  return Buffer.concat(Array.from({ length: n }, () => randomField(rng, depth)));
}

/** Bit flips, truncation, insertion, deletion, interesting bytes, appended random fields. */
function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const rounds = rng.range(1, 4);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(7)) {
      case 0: // bit flips
        for (let k = rng.range(1, 8); k > 0 && b.length > 0; k--) b[rng.int(b.length)] ^= 1 << rng.int(8);
        break;
      case 1: // truncate
        b = b.subarray(0, rng.int(b.length + 1));
        break;
      case 2: { // insert random bytes
        const at = rng.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 16)), b.subarray(at)]);
        break;
      }
      case 3: { // delete a range
        const at = rng.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + rng.range(1, 16))]);
        break;
      }
      case 4: // interesting bytes
        for (let k = rng.range(1, 4); k > 0 && b.length > 0; k--) b[rng.int(b.length)] = rng.pick([0x00, 0xff, 0x7f, 0x80, 0x01, 0x0a, 0x12]);
        break;
      case 5: // a random field appended (protobuf merges: later fields win)
        b = Buffer.concat([b, randomField(rng, 1)]);
        break;
      default: // a random field prepended
        b = Buffer.concat([randomField(rng, 1), b]);
        break;
    }
  }
  return b;
}

const encodeMessage = (type: string, obj: object): Buffer => {
  const mt = messageType(type);
  return Buffer.from(mt.encode(mt.fromObject(obj)).finish());
};

/** A Task method's request message, encoded. */
function encodeTaskRequest(method: string, obj: object): Buffer {
  const def = TASK.methods[method];
  def.resolve();
  const mt = def.resolvedRequestType!;
  return Buffer.from(mt.encode(mt.fromObject(obj)).finish());
}

function randomId(rng: Rng): string {
  return rng.chance(0.9) ? `fz-${rng.u32().toString(16)}` : rng.str(80);
}

/** A well-formed Task request object for method with a random (never the real) id; Create with a garbage bundle. */
function seedRequest(rng: Rng, method: string): object {
  const id = randomId(rng);
  switch (method) {
    case 'Create':
      return {
        id, bundle: `${GARBAGE_BUNDLE}/${rng.u32().toString(16)}`, terminal: rng.chance(0.5), stdin: rng.str(), stdout: rng.str(), stderr: rng.str(),
        rootfs: rng.chance(0.5) ? [{ type: 'bind', source: '/nonexistent-src', target: '', options: ['rbind'] }] : [],
      };
    case 'Kill': return { id, exec_id: rng.str(), signal: rng.int(65), all: rng.chance(0.5) };
    case 'Exec': return { id, exec_id: rng.str(), terminal: false, stdin: '', stdout: '', stderr: '', spec: { type_url: rng.str(), value: rng.bytes(rng.int(64)) } };
    case 'ResizePty': return { id, exec_id: rng.str(), width: rng.u32(), height: rng.u32() };
    case 'Update': return { id, resources: { type_url: rng.str(), value: rng.bytes(rng.int(64)) }, annotations: { [rng.str()]: rng.str() } };
    case 'Checkpoint': return { id, path: `${GARBAGE_BUNDLE}/ckpt` };
    case 'CloseIO': return { id, exec_id: rng.str(), stdin: rng.chance(0.5) };
    default: return { id, exec_id: rng.chance(0.5) ? '' : rng.str() };
  }
}

/** Decode a Task payload as the shim would and refuse what must not be sent (see the header comment). */
function safeTaskRequest(method: string, payload: Uint8Array): boolean {
  if (method === 'Shutdown') return false;
  const def = TASK.methods[method];
  if (!def) return true; // answered Unimplemented
  def.resolve();
  let req: Record<string, unknown>;
  try {
    const type = def.resolvedRequestType!;
    req = type.toObject(type.decode(payload), { defaults: true, longs: Number }) as Record<string, unknown>;
  } catch {
    return true; // the shim cannot decode it either
  }
  if (req.id === ID && !SAFE_WITH_REAL_ID.has(method)) return false;
  if (method === 'Create') {
    const bundle = String(req.bundle ?? '');
    if (path.isAbsolute(bundle) && fs.existsSync(path.join(bundle, 'config.json'))) return false;
    const ck = req.checkpoint;
    if (typeof ck === 'string' && ck !== '') return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Frames.

type Expect = { kind: 'none' } | { kind: 'any' } | { kind: 'error' } | { kind: 'code'; code: number } | { kind: 'state' };

interface Planned {
  cat: string;
  bytes: Buffer;
  streamId: number;
  expect: Expect;
}

const nsMeta = (): KeyValue[] => [{ key: NS_KEY, value: DIRECT_NS }];

function randomMeta(rng: Rng): KeyValue[] {
  const n = rng.chance(0.7) ? 0 : rng.int(6);
  const kvs = Array.from({ length: n }, () => ({ key: rng.chance(0.3) ? NS_KEY : rng.str(), value: rng.str(200) }));
  return rng.chance(0.5) ? [...nsMeta(), ...kvs] : kvs;
}

function randomTimeout(rng: Rng): number {
  if (rng.chance(0.7)) return 0;
  return rng.pick([1, -1, 1e9, 30e9, -1e18, 9e18, rng.u32() * 1000, -rng.u32()]);
}

function envelope(rng: Rng, service: string, method: string, payload: Buffer): Buffer {
  return encodeRequest({ service, method, payload, timeout_nano: randomTimeout(rng), metadata: randomMeta(rng) });
}

/** Per connection: unique odd and even stream ids (so each answer can be matched to its frame). */
class Streams {
  private odd = -1;
  private even = -2;
  constructor(private readonly rng: Rng) {}
  private jump(): number {
    return this.rng.chance(0.05) ? 2 * this.rng.int(1 << 20) : 0;
  }
  nextOdd(): number {
    this.odd += 2 + this.jump();
    return this.odd;
  }
  nextEven(): number {
    this.even += 2 + this.jump();
    return this.even;
  }
}

function frame(streamId: number, type: number, payload: Buffer, flags = 0): Buffer {
  return encodeFrame(streamId, type, payload, flags);
}

/** One safe Task request, random or mutated; the real id only in State/Pids/Stats/Connect. */
function taskPayload(rng: Rng): { method: string; payload: Buffer } {
  for (;;) {
    const real = rng.chance(0.15);
    // Pids runs `runc ps`: keep it rare so the fuzz does not turn into a fork bomb.
    const method = real ? rng.pick(['State', 'State', 'State', 'Stats', 'Stats', 'Connect', 'Pids']) : rng.pick(METHODS);
    let payload: Buffer;
    const mode = rng.int(3);
    if (real) {
      const base = encodeTaskRequest(method, { id: ID, exec_id: rng.chance(0.5) ? '' : rng.str() });
      payload = mode === 0 ? base : mutate(rng, base);
    } else if (mode === 0) {
      payload = randomProtobuf(rng);
    } else {
      let base: Buffer;
      try {
        base = encodeTaskRequest(method, seedRequest(rng, method));
      } catch {
        base = randomProtobuf(rng);
      }
      payload = mode === 1 ? base : mutate(rng, base);
    }
    if (safeTaskRequest(method, payload)) return { method, payload };
  }
}

/** Does an encoded envelope, after mutation, still obey the rules? */
function safeEnvelope(bytes: Buffer): boolean {
  let req;
  try {
    req = decodeRequest(bytes);
  } catch {
    return true;
  }
  return !TASK_SERVICES.includes(req.service) || safeTaskRequest(req.method, Buffer.from(req.payload));
}

const NON_TERMINAL = [
  ['valid', 4], ['unknown-service', 8], ['unknown-method', 8], ['even-stream', 8], ['bad-type', 10],
  ['random-protobuf', 16], ['mutated-envelope', 16], ['task-payload', 30],
] as const;
const WEIGHT_TOTAL = NON_TERMINAL.reduce((s, [, w]) => s + w, 0);

const SPECIAL_METHODS = ['', 'state', 'State ', 'constructor', '__proto__', 'hasOwnProperty', 'toString', 'Task/State', '/State', 'State\0'];

function plan(rng: Rng, streams: Streams, cat: string): Planned {
  switch (cat) {
    case 'valid': {
      const streamId = streams.nextOdd();
      const payload = encodeMessage('containerd.task.v2.StateRequest', { id: ID });
      return { cat, streamId, expect: { kind: 'state' }, bytes: frame(streamId, MessageType.Request, encodeRequest({ service: rng.pick(TASK_SERVICES), method: 'State', payload, timeout_nano: 0, metadata: nsMeta() })) };
    }
    case 'unknown-service': {
      let service = rng.chance(0.2) ? rng.pick(['containerd.task.v2.Tasks', 'containerd.task.v4.Task', 'containerd.task.v1.Task', SERVICE.toLowerCase(), `${SERVICE} `, `.${SERVICE}`, `${SERVICE}\0`, 'grpc.health.v1.Health']) : rng.str(300);
      if (TASK_SERVICES.includes(service)) service += 'x';
      const streamId = streams.nextOdd();
      return { cat, streamId, expect: { kind: 'code', code: Code.Unimplemented }, bytes: frame(streamId, MessageType.Request, envelope(rng, service, rng.pick(METHODS), rng.chance(0.5) ? Buffer.alloc(0) : randomProtobuf(rng))) };
    }
    case 'unknown-method': {
      let method = rng.chance(0.5) ? rng.pick(SPECIAL_METHODS) : rng.str(100);
      if (METHODS.includes(method)) method += '_';
      const streamId = streams.nextOdd();
      return { cat, streamId, expect: { kind: 'code', code: Code.Unimplemented }, bytes: frame(streamId, MessageType.Request, envelope(rng, rng.pick(TASK_SERVICES), method, randomProtobuf(rng))) };
    }
    case 'even-stream': {
      // Checked after decoding (as Go): a well-formed, even otherwise harmful-looking request is refused.
      const streamId = streams.nextEven();
      const { method, payload } = taskPayload(rng);
      return { cat, streamId, expect: { kind: 'code', code: Code.InvalidArgument }, bytes: frame(streamId, MessageType.Request, envelope(rng, rng.pick(TASK_SERVICES), method, payload)) };
    }
    case 'bad-type': {
      const type = rng.chance(0.5) ? rng.pick([0, MessageType.Response, MessageType.Data, 4, 0x81, 0xff]) : rng.int(256);
      const t = type === MessageType.Request ? 0 : type;
      const streamId = rng.chance(0.5) ? streams.nextOdd() : streams.nextEven();
      // A real request under the wrong type must not be served either.
      const payload = rng.chance(0.5) ? envelope(rng, SERVICE, 'State', encodeMessage('containerd.task.v2.StateRequest', { id: ID })) : rng.bytes(rng.int(200));
      return { cat, streamId, expect: { kind: 'none' }, bytes: frame(streamId, t, payload, rng.int(256)) };
    }
    case 'random-protobuf': {
      const streamId = streams.nextOdd();
      const payload = rng.chance(0.7) ? randomProtobuf(rng) : rng.bytes(rng.int(300));
      if (!safeEnvelope(payload)) return plan(rng, streams, 'unknown-service');
      return { cat, streamId, expect: { kind: 'error' }, bytes: frame(streamId, MessageType.Request, payload, rng.int(256)) };
    }
    case 'mutated-envelope': {
      const streamId = streams.nextOdd();
      const { method, payload } = taskPayload(rng);
      const m = mutate(rng, envelope(rng, rng.chance(0.8) ? rng.pick(TASK_SERVICES) : rng.str(), method, payload));
      if (!safeEnvelope(m)) return plan(rng, streams, 'unknown-method');
      return { cat, streamId, expect: { kind: 'any' }, bytes: frame(streamId, MessageType.Request, m) };
    }
    case 'task-payload': {
      const streamId = streams.nextOdd();
      const { method, payload } = taskPayload(rng);
      return { cat, streamId, expect: { kind: 'any' }, bytes: frame(streamId, MessageType.Request, envelope(rng, rng.pick(TASK_SERVICES), method, payload)) };
    }
    default:
      throw new Error(`no category ${cat}`);
  }
}

function pickCategory(rng: Rng): string {
  let x = rng.int(WEIGHT_TOTAL);
  for (const [c, w] of NON_TERMINAL) {
    if (x < w) return c;
    x -= w;
  }
  return 'task-payload';
}

// ---------------------------------------------------------------------------------------------
// Connections.

class Stats {
  readonly frames = new Map<string, number>();
  readonly connections = new Map<string, number>();
  readonly answers = new Map<string, number>();
  readonly problems: string[] = [];
  problemCount = 0;
  total = 0;
  /** Frames of the never-reading connections (some may still sit in our own buffer when destroyed). */
  noReadFrames = 0;
  backpressured = 0;
  oversizeSynced = 0;
  maxFrames = 0;
  count(cat: string, n = 1): void {
    this.frames.set(cat, (this.frames.get(cat) ?? 0) + n);
    if (cat === 'no-read-flood') this.noReadFrames += n;
    else this.total += n;
  }
  conn(kind: string): void {
    this.connections.set(kind, (this.connections.get(kind) ?? 0) + 1);
  }
  answer(code: number): void {
    const k = Code[code] ?? String(code);
    this.answers.set(k, (this.answers.get(k) ?? 0) + 1);
  }
  problem(msg: string): void {
    this.problemCount++;
    if (this.problems.length < 30) this.problems.push(msg);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Every socket the fuzz opened, so that none outlives it. */
const openSockets = new Set<net.Socket>();

function connect(sock: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sock);
    s.once('connect', () => {
      openSockets.add(s);
      s.once('close', () => openSockets.delete(s));
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Resolves true on 'drain', false on 'close' or when ms pass (a stall: the server stopped reading). */
function drainOrClose(s: net.Socket, ms = CONNECTION_DEADLINE_MS): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const done = (v: boolean) => () => {
      clearTimeout(timer);
      s.off('drain', onDrain);
      s.off('close', onClose);
      resolve(v);
    };
    const onDrain = done(true);
    const onClose = done(true);
    const timer = setTimeout(done(false), ms);
    s.on('drain', onDrain);
    s.on('close', onClose);
  });
}

/** Write bytes in a few random pieces (frame boundaries never respected), awaiting drain. */
async function writeSplit(rng: Rng, s: net.Socket, bytes: Buffer, stats: Stats, where: string): Promise<void> {
  let off = 0;
  while (off < bytes.length) {
    const n = rng.chance(0.05) ? rng.range(1, 12) : rng.chance(0.5) ? bytes.length - off : rng.range(1, Math.max(1, bytes.length - off));
    const piece = bytes.subarray(off, off + n);
    off += piece.length;
    if (s.destroyed) return;
    if (!s.write(piece) && !(await drainOrClose(s))) {
      stats.problem(`${where}: the server stopped reading a connection that reads its answers (${s.writableLength} bytes unsent for ${CONNECTION_DEADLINE_MS} ms)`);
      s.destroy();
      return;
    }
  }
}

/** Collects the server's answers on a connection and checks each one is a well-formed Response. */
class Answers {
  readonly reader = new FrameReader(MESSAGE_LENGTH_MAX);
  readonly got = new Map<number, { code: number; message: string; payload: Buffer }>();
  closed: Promise<void>;
  isClosed = false;
  constructor(private readonly s: net.Socket, private readonly stats: Stats, private readonly where: string) {
    s.on('data', (chunk: Buffer) => {
      for (const ev of this.reader.push(chunk)) {
        if (ev.kind === 'oversized') {
          stats.problem(`${where}: server sent an oversized frame (${ev.header.length})`);
          continue;
        }
        if (ev.header.type !== MessageType.Response || ev.header.flags !== 0) stats.problem(`${where}: server frame of type ${ev.header.type} flags ${ev.header.flags}`);
        let res;
        try {
          res = decodeResponse(ev.payload);
        } catch (err) {
          stats.problem(`${where}: undecodable response: ${(err as Error).message}`);
          continue;
        }
        if (this.got.has(ev.header.streamId)) stats.problem(`${where}: second answer on stream ${ev.header.streamId}`);
        this.got.set(ev.header.streamId, { code: res.status.code, message: res.status.message, payload: res.payload });
        stats.answer(res.status.code);
      }
    });
    s.on('error', () => {});
    this.closed = new Promise((r) => s.once('close', () => {
      this.isClosed = true;
      r();
    }));
  }
  async waitClosed(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => { timer = setTimeout(r, ms); });
    await Promise.race([this.closed, timeout]);
    clearTimeout(timer);
    return this.isClosed;
  }
}

const StateResponse = () => messageType('containerd.task.v2.StateResponse');

function checkAnswers(stats: Stats, where: string, planned: Planned[], answers: Answers, initPid: number): void {
  for (const p of planned) {
    const a = answers.got.get(p.streamId);
    if (p.expect.kind === 'none') {
      if (a) stats.problem(`${where}: ${p.cat} frame on stream ${p.streamId} was answered (${a.code} ${a.message})`);
      continue;
    }
    if (!a) {
      stats.problem(`${where}: ${p.cat} frame on stream ${p.streamId} not answered`);
      continue;
    }
    switch (p.expect.kind) {
      case 'code':
        if (a.code !== p.expect.code) stats.problem(`${where}: ${p.cat} stream ${p.streamId}: code ${a.code} (${a.message}), expected ${p.expect.code}`);
        break;
      case 'error':
        if (a.code === Code.OK) stats.problem(`${where}: ${p.cat} stream ${p.streamId}: OK for random bytes`);
        break;
      case 'state': {
        if (a.code !== Code.OK) {
          stats.problem(`${where}: valid State on stream ${p.streamId}: ${a.code} ${a.message}`);
          break;
        }
        const st = StateResponse().toObject(StateResponse().decode(a.payload), { defaults: true }) as { id: string; pid: number; status: number };
        if (st.id !== ID || st.pid !== initPid || st.status !== STATUS.RUNNING) stats.problem(`${where}: valid State answered ${JSON.stringify(st)}`);
        break;
      }
      default:
        break;
    }
  }
  const known = new Set(planned.map((p) => p.streamId));
  for (const id of answers.got.keys()) if (!known.has(id)) stats.problem(`${where}: answer on stream ${id} nobody asked on`);
}

interface FuzzEnv {
  sock: string;
  stats: Stats;
  initPid: number;
  shimPid: number;
  done: () => boolean;
}

/** A connection whose every answer is predicted and checked; it may end with a truncated or oversized frame. */
async function checkedConnection(rng: Rng, env: FuzzEnv, where: string): Promise<void> {
  const { stats } = env;
  const streams = new Streams(rng);
  const n = rng.range(1, 300);
  const planned: Planned[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    let p: Planned;
    if (rng.chance(0.003) && stats.oversizeSynced < 40) {
      // An oversized frame whose payload is actually sent: answered at once, skipped, the stream stays in sync.
      stats.oversizeSynced++;
      const streamId = streams.nextOdd();
      const len = MESSAGE_LENGTH_MAX + rng.range(1, 256 * 1024);
      p = { cat: 'oversize-synced', streamId, expect: { kind: 'code', code: Code.ResourceExhausted }, bytes: Buffer.concat([encodeHeader({ length: len, streamId, type: rng.chance(0.8) ? 1 : rng.int(256), flags: 0 }), rng.bytes(len)]) };
    } else if (rng.chance(0.002) && stats.maxFrames < 20) {
      // Exactly the maximum: buffered whole, refused as a Request that does not decode.
      stats.maxFrames++;
      const streamId = streams.nextOdd();
      p = { cat: 'max-length', streamId, expect: { kind: 'any' }, bytes: frame(streamId, MessageType.Request, rng.bytes(MESSAGE_LENGTH_MAX)) };
    } else {
      p = plan(rng, streams, pickCategory(rng));
    }
    planned.push(p);
    parts.push(p.bytes);
  }
  // How it ends: plain end(), a truncated frame then end() (half-open mid-frame), or an oversized header.
  const ending = rng.int(10);
  let tail: Planned | undefined;
  if (ending < 3) {
    const full = plan(rng, streams, pickCategory(rng));
    const cut = rng.int(full.bytes.length); // 0..length-1: always short by at least one byte
    tail = { cat: 'truncated-end', streamId: full.streamId, expect: { kind: 'none' }, bytes: full.bytes.subarray(0, cut) };
    if (cut === 0) tail.bytes = full.bytes.subarray(0, 1);
  } else if (ending < 5) {
    const streamId = streams.nextOdd();
    const length = rng.pick([MESSAGE_LENGTH_MAX + 1, 0xffffffff, MESSAGE_LENGTH_MAX + 1 + rng.int(0xffffffff - MESSAGE_LENGTH_MAX - 1)]);
    // Any type: the length is refused before the type is looked at.
    tail = { cat: 'oversize', streamId, expect: { kind: 'code', code: Code.ResourceExhausted }, bytes: Buffer.concat([encodeHeader({ length, streamId, type: rng.chance(0.7) ? 1 : rng.int(256), flags: rng.int(256) }), rng.bytes(rng.int(64 * 1024))]) };
  }
  if (tail) {
    planned.push(tail);
    parts.push(tail.bytes);
  }
  stats.conn(tail ? `checked+${tail.cat}` : 'checked');
  const s = await connect(env.sock);
  const answers = new Answers(s, stats, where);
  await writeSplit(rng, s, Buffer.concat(parts), stats, where);
  for (const p of planned) stats.count(p.cat);
  s.end();
  // The server answers everything it read, then closes (half-close handling, oversize discarding).
  if (!(await answers.waitClosed(CONNECTION_DEADLINE_MS))) {
    stats.problem(`${where}: server did not close ${CONNECTION_DEADLINE_MS} ms after end() (${answers.got.size}/${planned.length} answered)`);
    s.destroy();
    return;
  }
  if (answers.reader.midFrame) stats.problem(`${where}: server closed inside a response frame`);
  checkAnswers(stats, where, planned, answers, env.initPid);
}

/** Frames, then part of one, then destroy() at once: nothing waited for. */
async function destroyMidFrame(rng: Rng, env: FuzzEnv): Promise<void> {
  const streams = new Streams(rng);
  const planned = Array.from({ length: rng.range(0, 100) }, () => plan(rng, streams, pickCategory(rng)));
  const last = plan(rng, streams, pickCategory(rng));
  const cut = rng.range(1, last.bytes.length - 1);
  env.stats.conn('destroy-mid-frame');
  const s = await connect(env.sock);
  s.on('error', () => {});
  s.on('data', () => {});
  await writeSplit(rng, s, Buffer.concat([...planned.map((p) => p.bytes), last.bytes.subarray(0, cut)]), env.stats, 'destroy-mid-frame');
  for (const p of planned) env.stats.count(p.cat);
  env.stats.count('truncated-destroy');
  if (rng.chance(0.5)) await sleep(rng.int(20));
  s.destroy();
}

/** Random bytes (anything at all as a header), then end() and wait for the close, or destroy(). */
async function randomBytes(rng: Rng, env: FuzzEnv, where: string): Promise<void> {
  env.stats.conn('random-bytes');
  const s = await connect(env.sock);
  const answers = new Answers(s, env.stats, where);
  const chunks = rng.range(1, 8);
  for (let i = 0; i < chunks; i++) {
    // Sometimes a header with a small length, so that the random payload is parsed as a frame.
    const head = rng.chance(0.3) ? encodeHeader({ length: rng.int(64), streamId: rng.u32(), type: rng.int(256), flags: rng.int(256) }) : Buffer.alloc(0);
    await writeSplit(rng, s, Buffer.concat([head, rng.bytes(rng.range(1, 4096))]), env.stats, where);
    env.stats.count('random-bytes');
  }
  if (rng.chance(0.3)) {
    s.destroy();
    return;
  }
  s.end();
  if (!(await answers.waitClosed(CONNECTION_DEADLINE_MS))) {
    env.stats.problem(`${where}: server did not close after end() of random bytes`);
    s.destroy();
  }
}

/**
 * Floods requests whose answers are larger than themselves and never reads: the server must stop
 * reading (backpressure) instead of buffering without bound, so our writes stop draining.
 */
async function noReadFlood(rng: Rng, env: FuzzEnv, where: string): Promise<void> {
  env.stats.conn('no-read');
  const s = await connect(env.sock);
  s.on('error', () => {});
  s.pause(); // never read
  const streams = new Streams(rng);
  const CAP = 64 << 20;
  let written = 0;
  let stalled = false;
  while (written < CAP && !s.destroyed) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 64; i++) {
      const streamId = streams.nextOdd();
      batch.push(frame(streamId, MessageType.Request, encodeRequest({ service: `fuzz.NoSuchService.${'x'.repeat(2000)}`, method: 'M', payload: Buffer.alloc(0), timeout_nano: 0, metadata: [] })));
    }
    const b = Buffer.concat(batch);
    written += b.length;
    env.stats.count('no-read-flood', batch.length);
    if (!s.write(b)) {
      const drained = await new Promise<boolean>((r) => {
        const timer = setTimeout(() => r(false), 1_000);
        s.once('drain', () => {
          clearTimeout(timer);
          r(true);
        });
      });
      if (!drained) {
        stalled = true;
        break;
      }
    }
  }
  if (stalled) env.stats.backpressured++;
  else env.stats.problem(`${where}: wrote ${written} bytes of requests without reading an answer and the server kept reading (no backpressure)`);
  if (rng.chance(0.5)) {
    s.end(); // half-open with answers owed that nobody reads
    await sleep(100);
  }
  s.destroy();
}

async function lane(lane: number, env: FuzzEnv): Promise<void> {
  const rng = new Rng(SEED + lane * 7919);
  let k = 0;
  while (!env.done()) {
    const where = `lane ${lane} conn ${k++}`;
    const kind = rng.int(20);
    try {
      if (kind < 14) await checkedConnection(rng, env, where);
      else if (kind < 17) await destroyMidFrame(rng, env);
      else await randomBytes(rng, env, where);
    } catch (err) {
      env.stats.problem(`${where}: ${(err as Error).stack ?? String(err)}`);
      if (!alive(env.shimPid)) {
        env.stats.problem(`${where}: the shim (pid ${env.shimPid}) is gone`);
        return;
      }
      await sleep(50);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The well-formed client, in a worker thread with its own event loop.

const CLIENT_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { TtrpcClient, typedCall } = require(workerData.ttrpc);
const { serviceDef } = require(workerData.proto);
const TASK = serviceDef('containerd.task.v2.Task');
(async () => {
  const client = await TtrpcClient.connect(workerData.socket);
  const opts = { timeoutMs: 10000, metadata: { 'containerd-namespace-ttrpc': workerData.ns } };
  let phase = 'warmup';
  const latencies = [];
  const failures = [];
  parentPort.on('message', (m) => { phase = m; });
  let i = 0;
  for (;;) {
    if (phase === 'stop') break;
    const method = i++ % 4 === 3 ? 'Pids' : 'State';
    const t0 = performance.now();
    try {
      const r = await typedCall(client, TASK, method, { id: workerData.id }, opts);
      const ms = performance.now() - t0;
      if (method === 'State' && (r.status !== workerData.running || r.pid !== workerData.pid)) failures.push('State answered ' + JSON.stringify({ status: r.status, pid: r.pid }));
      if (method === 'Pids' && !r.processes.some((p) => p.pid === workerData.pid)) failures.push('Pids without the init pid');
      if (phase === 'run') latencies.push({ method, ms });
    } catch (err) {
      failures.push(method + ': ' + (err && err.message));
    }
    if (phase === 'warmup' && i === 40) parentPort.postMessage({ kind: 'warm' });
    if (phase === 'warmup' && i > 40) await new Promise((r) => setTimeout(r, 20));
  }
  parentPort.postMessage({ kind: 'result', latencies, failures });
  await new Promise((r) => parentPort.once('message', r));
  client.close();
  parentPort.postMessage({ kind: 'closed' });
})().catch((err) => parentPort.postMessage({ kind: 'result', latencies: [], failures: ['worker: ' + err.stack] }));
`;

interface ClientResult { latencies: Array<{ method: string; ms: number }>; failures: string[] }

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// ---------------------------------------------------------------------------------------------
// Shim observation.

/** VmRSS in kB, NaN once the process is gone (so that a crash fails assertions, not the test's code). */
function rssKb(pid: number): number {
  try {
    return Number((procStatus(pid, 'VmRSS') ?? 'NaN').replace(/\s*kB$/, ''));
  } catch {
    return NaN;
  }
}

function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function fdList(pid: number): string[] {
  if (!alive(pid)) return [];
  return fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return `${fd}->${fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
    } catch {
      return `${fd}->?`;
    }
  });
}

// ---------------------------------------------------------------------------------------------

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

t.test(`fuzz: ${TARGET} malformed frames to a running shim (seed ${SEED})`, async (t: Test) => {
  t.comment(`seed ${SEED} (RUNCTS_FUZZ_SEED=${SEED} replays it), target ${TARGET} frames`);
  const events = shims.events('fuzz');
  await events.listen();
  t.teardown(() => events.close());
  const bundle = shims.bundle(ID, ['sleep', '1000']);
  const shim: DirectShim = await shims.startAndConnect(t, bundle, ID, events.socket);
  const sock = shim.address.replace(/^unix:\/\//, '');
  const created = await shim.call('Create', shims.createReq(ID, bundle));
  await shim.call('Start', { id: ID, exec_id: '' });
  const initPid: number = created.pid;
  let deleted = false;
  // A shim the fuzz killed leaves its container behind: clean up as containerd would, with `delete`.
  t.teardown(async () => {
    if (deleted || alive(shim.pid)) return;
    const r = await runShimBinary(['-namespace', DIRECT_NS, '-address', shims.containerdAddress, '-publish-binary', '/bin/true', '-id', ID, '-bundle', bundle, 'delete'], {
      cwd: bundle, env: { ...process.env, TTRPC_ADDRESS: events.socket }, timeoutMs: 30_000,
    });
    t.comment(`the shim died: \`delete\` exited ${r.code}`);
  });
  t.ok(initPid > 0, `container running, init pid ${initPid}, shim pid ${shim.pid}`);
  t.ok(await events.waitFor(() => events.for(ID).some((e) => e.topic === '/tasks/start')), '/tasks/start published (the events connection is settled)');

  // The well-formed client: warm up, then baselines, then the fuzz.
  const worker = new Worker(CLIENT_SOURCE, {
    eval: true,
    workerData: {
      ttrpc: path.resolve(__dirname, '../../shim/framework/ttrpc/index.js'),
      proto: path.resolve(__dirname, '../../shim/framework/proto.js'),
      socket: sock, ns: DIRECT_NS, id: ID, pid: initPid, running: STATUS.RUNNING,
    },
  });
  t.teardown(() => worker.terminate());
  const messages: Array<{ kind: string } & Partial<ClientResult>> = [];
  worker.on('message', (m) => messages.push(m));
  worker.on('error', (err) => messages.push({ kind: 'result', latencies: [], failures: [`worker error: ${err.stack}`] }));
  const nextMessage = async (kind: string, ms: number) => {
    const end = Date.now() + ms;
    for (;;) {
      const i = messages.findIndex((m) => m.kind === kind || (kind !== 'result' && m.kind === 'result'));
      if (i >= 0) return messages.splice(i, 1)[0];
      if (Date.now() > end) return undefined;
      await sleep(10);
    }
  };
  const warm = await nextMessage('warm', 60_000);
  t.equal(warm?.kind, 'warm', `well-formed client warmed up ${warm?.kind === 'result' ? JSON.stringify(warm.failures) : ''}`);

  // Half-open connections held idle mid-frame all along (part of a header, or a header and part of its payload).
  const held: net.Socket[] = [];
  const rssBefore = rssKb(shim.pid);
  const fdsBefore = fdCount(shim.pid);
  const fdsBeforeList = fdList(shim.pid);
  t.comment(`before: shim RSS ${rssBefore} kB, ${fdsBefore} fds`);

  const stats = new Stats();
  // Stops at the target, or (a stall somewhere) at the fuzz deadline, which then fails the frame count.
  const fuzzDeadline = Date.now() + FUZZ_DEADLINE_MS;
  const env: FuzzEnv = { sock, stats, initPid, shimPid: shim.pid, done: () => stats.total >= TARGET || Date.now() > fuzzDeadline };
  const rng = new Rng(SEED ^ 0x5eed);
  for (let i = 0; i < HELD; i++) {
    const s = await connect(sock);
    s.on('error', () => {});
    s.on('data', () => {});
    s.write(i % 2 === 0 ? rng.bytes(rng.range(1, HEADER_LENGTH - 1)) : Buffer.concat([encodeHeader({ length: rng.range(1000, MESSAGE_LENGTH_MAX), streamId: 1, type: 1, flags: 0 }), rng.bytes(100)]));
    held.push(s);
    stats.count('held-half-open');
    stats.conn('held-half-open');
  }

  worker.postMessage('run');
  let rssMax = rssBefore;
  const rssSamples: number[] = [];
  const sampler = setInterval(() => {
    const r = rssKb(shim.pid);
    if (Number.isNaN(r)) return; // gone: asserted below
    rssSamples.push(r);
    rssMax = Math.max(rssMax, r);
  }, 100);
  const t0 = Date.now();
  const progress = setInterval(() => t.comment(`progress: ${stats.total} frames after ${((Date.now() - t0) / 1000).toFixed(0)} s, ${stats.problemCount} problems, ${openSockets.size} sockets open`), 15_000);
  const noRead = (async () => {
    const r = new Rng(SEED ^ 0xbad);
    for (let i = 0; i < NO_READ_CONNECTIONS && !env.done(); i++) {
      try {
        await noReadFlood(r, env, `no-read ${i}`);
      } catch (err) {
        stats.problem(`no-read ${i}: ${(err as Error).message}`);
      }
      await sleep(300);
    }
  })();
  await Promise.all([...Array.from({ length: LANES }, (_, i) => lane(i, env)), noRead]);
  const wallMs = Date.now() - t0;
  clearInterval(sampler);
  clearInterval(progress);
  t.ok(alive(shim.pid), 'shim alive right after the fuzz');
  for (const s of held) s.destroy();
  for (const s of openSockets) s.destroy();
  const rssEndOfFuzz = rssKb(shim.pid);

  worker.postMessage('stop');
  const result = await nextMessage('result', 30_000);
  t.ok(result, 'the well-formed client reported');
  const latencies = result?.latencies ?? [];
  const failures = result?.failures ?? ['no result'];

  // fds back to the baseline once every fuzz connection is closed.
  let fdsAfter = fdCount(shim.pid);
  for (let end = Date.now() + 5_000; fdsAfter !== fdsBefore && Date.now() < end; fdsAfter = fdCount(shim.pid)) await sleep(50);
  const rssAfter = rssKb(shim.pid);

  // Figures.
  const cats = [...stats.frames.entries()].sort((a, b) => b[1] - a[1]);
  t.comment(`frames sent: ${stats.total} (target ${TARGET}) + ${stats.noReadFrames} on never-reading connections, in ${(wallMs / 1000).toFixed(1)} s`);
  for (const [c, n] of cats) t.comment(`  ${c.padEnd(20)} ${n}`);
  t.comment(`connections: ${[...stats.connections.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  t.comment(`answers: ${[...stats.answers.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  t.comment(`never-reading connections stopped by backpressure: ${stats.backpressured}/${stats.connections.get('no-read') ?? 0}`);
  t.comment(`shim RSS: before ${rssBefore} kB, max ${rssMax} kB (+${rssMax - rssBefore}), end of fuzz ${rssEndOfFuzz} kB, after ${rssAfter} kB; ${rssSamples.length} samples`);
  t.comment(`shim fds: before ${fdsBefore}, after ${fdsAfter}`);
  const all = latencies.map((l) => l.ms).sort((a, b) => a - b);
  const byMethod = (m: string) => latencies.filter((l) => l.method === m).map((l) => l.ms).sort((a, b) => a - b);
  const fmt = (xs: number[]) => `${xs.length} calls, p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms, max ${(xs[xs.length - 1] ?? NaN).toFixed(1)} ms`;
  t.comment(`well-formed client: ${fmt(all)} (State: ${fmt(byMethod('State'))}; Pids: ${fmt(byMethod('Pids'))})`);

  // Assertions.
  t.ok(stats.total >= TARGET, `sent ${stats.total} frames >= ${TARGET}`);
  for (const c of ['random-bytes', 'bad-type', 'even-stream', 'random-protobuf', 'mutated-envelope', 'unknown-service', 'unknown-method', 'task-payload', 'oversize', 'truncated-end', 'truncated-destroy', 'valid']) {
    t.ok((stats.frames.get(c) ?? 0) > 0, `category ${c} was sent`);
  }
  t.same(stats.problems, [], `no protocol violation, stall or error on the fuzz connections (${stats.problemCount})`);
  t.equal(stats.backpressured, stats.connections.get('no-read') ?? 0, 'every never-reading connection was stopped by backpressure');
  t.ok((stats.connections.get('no-read') ?? 0) > 0, 'never-reading connections ran');
  t.same(failures, [], 'every call of the well-formed client succeeded with the right answer');
  const minCalls = Math.max(20, Math.floor(wallMs / 1000) * 5);
  t.ok(all.length >= minCalls, `the well-formed client was served throughout: ${all.length} calls in ${(wallMs / 1000).toFixed(1)} s (>= ${minCalls})`);
  t.ok(all.length > 0 && all[all.length - 1] < MAX_LATENCY_MS, `worst latency ${(all[all.length - 1] ?? NaN).toFixed(1)} ms < ${MAX_LATENCY_MS} ms`);
  t.ok(rssMax - rssBefore < RSS_GROWTH_MAX_KB, `RSS growth ${rssMax - rssBefore} kB < ${RSS_GROWTH_MAX_KB} kB`);
  t.ok(rssAfter - rssBefore < RSS_GROWTH_MAX_KB, `RSS after the fuzz ${rssAfter - rssBefore} kB above the start`);
  t.equal(fdsAfter, fdsBefore, 'shim fd count back to its baseline');
  if (fdsAfter !== fdsBefore) {
    const now = new Set(fdList(shim.pid));
    t.comment(`fds added: ${[...now].filter((f) => !fdsBeforeList.includes(f)).join(' ')}`);
  }

  // Afterwards: the same shim, the container still running, a fresh connection served.
  worker.postMessage('close');
  await nextMessage('closed', 5_000);
  if (!alive(shim.pid)) {
    t.fail('shim still alive'); // the teardown cleans up after it
    return;
  }
  const fresh = await connectShim(shim.address);
  t.teardown(() => fresh.client.close());
  t.equal(fresh.pid, shim.pid, 'a fresh connection reaches the same shim process');
  const st = await fresh.call('State', { id: ID, exec_id: '' });
  t.same([st.status, st.pid], [STATUS.RUNNING, initPid], 'container still RUNNING with its pid');
  t.ok(alive(initPid), 'container process alive');
  const pids = await fresh.call('Pids', { id: ID });
  t.ok(pids.processes.some((p: { pid: number }) => p.pid === initPid), 'Pids still lists the init');
  t.notOk(events.for(ID).some((e) => e.topic === '/tasks/exit'), 'no exit event for the container during the fuzz');

  await fresh.call('Kill', { id: ID, exec_id: '', signal: 9, all: false });
  t.equal((await fresh.call('Wait', { id: ID, exec_id: '' })).exit_status, 137, 'killed: 137');
  const d = await fresh.call('Delete', { id: ID, exec_id: '' });
  deleted = true;
  t.equal(d.exit_status, 137, 'deleted');
  t.ok(await events.waitFor(() => events.for(ID).some((e) => e.topic === '/tasks/delete')), '/tasks/delete published');
  await fresh.call('Shutdown', { id: ID, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits after Shutdown');
  const fuzzCreates = events.events.filter((e) => e.topic === '/tasks/create').map((e) => e.event.container_id as string);
  t.same(fuzzCreates, [ID], 'no container was created by the fuzz');
});

t.test('nothing is left behind: no shim process, socket or mount of this test', async (t) => {
  await shims.assertNothingLeft(t, 1);
});
