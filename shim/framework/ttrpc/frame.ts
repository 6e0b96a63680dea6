// ttrpc framing: a 10-byte big-endian header followed by the payload.
//
//   0               4               8     9     10
//   | length u32 BE | stream id u32 BE | type | flags | payload (length bytes) ...
//
// See docs/ttrpc-protocol.md. The reader is incremental (fed whatever chunks the socket yields)
// and never buffers the payload of an oversized frame: it reports the frame's header at once and
// then counts the payload bytes away as they arrive, so the stream stays in sync.

export const HEADER_LENGTH = 10;
/** Largest payload either side accepts (ttrpc's messageLengthMax, 4 MiB). */
export const MESSAGE_LENGTH_MAX = 4 << 20;
/** Stream ids and lengths are uint32. */
export const UINT32_MAX = 0xffffffff;

export const MessageType = {
  Request: 0x1,
  Response: 0x2,
  /** Streaming data (ttrpc 1.2 and later); this implementation ignores it like ttrpc 1.1 does. */
  Data: 0x3,
} as const;

export interface FrameHeader {
  /** Payload length, excluding the header. */
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export type FrameEvent =
  | { kind: 'frame'; header: FrameHeader; payload: Buffer }
  /** A frame whose declared length exceeds the maximum; its payload is being discarded. */
  | { kind: 'oversized'; header: FrameHeader };

function checkUint(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`ttrpc: ${name} ${v} out of range`);
}

export function encodeHeader(h: FrameHeader, into: Buffer = Buffer.allocUnsafe(HEADER_LENGTH), offset = 0): Buffer {
  checkUint('length', h.length, UINT32_MAX);
  checkUint('stream id', h.streamId, UINT32_MAX);
  checkUint('type', h.type, 0xff);
  checkUint('flags', h.flags, 0xff);
  into.writeUInt32BE(h.length, offset);
  into.writeUInt32BE(h.streamId, offset + 4);
  into.writeUInt8(h.type, offset + 8);
  into.writeUInt8(h.flags, offset + 9);
  return into;
}

export function decodeHeader(buf: Buffer, offset = 0): FrameHeader {
  if (buf.length - offset < HEADER_LENGTH) throw new RangeError('ttrpc: short frame header');
  return {
    length: buf.readUInt32BE(offset),
    streamId: buf.readUInt32BE(offset + 4),
    type: buf.readUInt8(offset + 8),
    flags: buf.readUInt8(offset + 9),
  };
}

/** Header and payload in one buffer, ready for a single socket write. */
export function encodeFrame(streamId: number, type: number, payload: Uint8Array, flags = 0): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  encodeHeader({ length: payload.length, streamId, type, flags }, out, 0);
  out.set(payload, HEADER_LENGTH);
  return out;
}

/**
 * Incremental frame decoder. `push` every chunk read from the socket; it returns the events the
 * chunk completed, in stream order. Memory held is at most one partial frame of at most
 * `maxLength` bytes plus one partial header.
 */
export class FrameReader {
  /** Unconsumed input: chunks[head..], the first possibly already partly consumed. */
  private chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  /** Header of the frame whose payload is being collected or discarded. */
  private current: FrameHeader | undefined;
  /** Payload bytes still to drop for an oversized frame. */
  private discarding = 0;

  constructor(private readonly maxLength: number = MESSAGE_LENGTH_MAX) {}

  /** True when the bytes seen so far end inside a frame (a truncated frame if EOF comes now). */
  get midFrame(): boolean {
    return this.buffered > 0 || this.current !== undefined;
  }

  /** Bytes held for the frame in progress (never any of an oversized frame's payload). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): FrameEvent[] {
    const events: FrameEvent[] = [];
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    for (;;) {
      if (this.discarding > 0) {
        this.discarding -= this.drop(Math.min(this.discarding, this.buffered));
        if (this.discarding > 0) break;
        this.current = undefined;
        continue;
      }
      if (this.current === undefined) {
        if (this.buffered < HEADER_LENGTH) break;
        const header = decodeHeader(this.take(HEADER_LENGTH));
        this.current = header;
        if (header.length > this.maxLength) {
          events.push({ kind: 'oversized', header });
          this.discarding = header.length;
          continue;
        }
      }
      const header = this.current;
      if (this.buffered < header.length) break;
      this.current = undefined;
      events.push({ kind: 'frame', header, payload: this.take(header.length) });
    }
    return events;
  }

  /** Remove and return the first n buffered bytes (n <= buffered); no copy when one chunk holds them. */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[this.head];
    if (first.length >= n) {
      this.consume(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[this.head];
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  /** Drop the first n buffered bytes; returns n. */
  private drop(n: number): number {
    let left = n;
    while (left > 0) left -= this.consume(Math.min(left, this.chunks[this.head].length));
    return n;
  }

  /** Advance past k bytes of the head chunk (k <= its length); returns k. */
  private consume(k: number): number {
    const c = this.chunks[this.head];
    if (k === c.length) {
      this.head++;
      // Compact now and then so a stream of tiny chunks stays linear.
      if (this.head === this.chunks.length) {
        this.chunks = [];
        this.head = 0;
      } else if (this.head >= 1024) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
    } else {
      this.chunks[this.head] = c.subarray(k);
    }
    this.buffered -= k;
    return k;
  }
}
