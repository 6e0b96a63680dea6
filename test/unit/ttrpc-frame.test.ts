// ttrpc framing: the 10-byte header codec and the incremental frame reader, including the
// oversized-frame path that must stay in sync without buffering the payload.
// Ports channel_test.go (TestReadWriteMessage, TestMessageOversize) of containerd/ttrpc.
import t from 'tap';
import {
  FrameReader,
  HEADER_LENGTH,
  MESSAGE_LENGTH_MAX,
  MessageType,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  type FrameEvent,
} from '../../shim/framework/ttrpc';

t.test('constants match ttrpc channel.go', async (t) => {
  t.equal(HEADER_LENGTH, 10);
  t.equal(MESSAGE_LENGTH_MAX, 4 * 1024 * 1024);
  t.same(MessageType, { Request: 1, Response: 2, Data: 3 });
});

t.test('header is length, stream id (uint32 BE), type, flags', async (t) => {
  const h = encodeHeader({ length: 0x01020304, streamId: 0xa0b0c0d0, type: 2, flags: 0x7f });
  t.same([...h], [0x01, 0x02, 0x03, 0x04, 0xa0, 0xb0, 0xc0, 0xd0, 0x02, 0x7f]);
  t.same(decodeHeader(h), { length: 0x01020304, streamId: 0xa0b0c0d0, type: 2, flags: 0x7f });
  t.same(decodeHeader(Buffer.concat([Buffer.from([9, 9]), h]), 2).streamId, 0xa0b0c0d0);
  t.throws(() => decodeHeader(Buffer.alloc(9)), RangeError);
  t.throws(() => encodeHeader({ length: -1, streamId: 1, type: 1, flags: 0 }), RangeError);
  t.throws(() => encodeHeader({ length: 1, streamId: 2 ** 32, type: 1, flags: 0 }), RangeError);
  t.throws(() => encodeHeader({ length: 1, streamId: 1, type: 256, flags: 0 }), RangeError);
  t.throws(() => encodeHeader({ length: 1, streamId: 1, type: 1, flags: 1.5 }), RangeError);
});

t.test('encodeFrame: header then payload in one buffer', async (t) => {
  const f = encodeFrame(7, MessageType.Request, Buffer.from('abc'));
  t.same([...f], [0, 0, 0, 3, 0, 0, 0, 7, 1, 0, 0x61, 0x62, 0x63]);
  const empty = encodeFrame(1, MessageType.Response, Buffer.alloc(0), 4);
  t.same([...empty], [0, 0, 0, 0, 0, 0, 0, 1, 2, 4]);
});

function framesOf(events: FrameEvent[]): Array<{ id: number; type: number; payload: string }> {
  return events.map((e) => {
    if (e.kind !== 'frame') throw new Error(`unexpected ${e.kind}`);
    return { id: e.header.streamId, type: e.header.type, payload: e.payload.toString() };
  });
}

// TestReadWriteMessage
t.test('round trip of several messages in one chunk', async (t) => {
  const messages = ['hello', 'this is a test', 'of message framing'];
  const wire = Buffer.concat(messages.map((m, i) => encodeFrame(i, 1, Buffer.from(m))));
  const r = new FrameReader();
  t.same(
    framesOf(r.push(wire)),
    messages.map((m, i) => ({ id: i, type: 1, payload: m })),
  );
  t.equal(r.midFrame, false);
  t.equal(r.bufferedBytes, 0);
});

t.test('byte-by-byte feeding yields the same frames, each exactly when complete', async (t) => {
  const frames = [
    encodeFrame(1, 1, Buffer.from('first')),
    encodeFrame(3, 2, Buffer.alloc(0)),
    encodeFrame(5, 3, Buffer.from('x'.repeat(300))),
  ];
  const wire = Buffer.concat(frames);
  const ends = new Set<number>();
  let off = 0;
  for (const f of frames) ends.add((off += f.length));
  const r = new FrameReader();
  const got: FrameEvent[] = [];
  const wrong: string[] = [];
  for (let i = 0; i < wire.length; i++) {
    const ev = r.push(wire.subarray(i, i + 1));
    const atEnd = ends.has(i + 1);
    if (ev.length !== (atEnd ? 1 : 0)) wrong.push(`${ev.length} frames after byte ${i + 1}`);
    if (r.midFrame === atEnd) wrong.push(`midFrame=${r.midFrame} after byte ${i + 1}`);
    got.push(...ev);
  }
  t.same(wrong, [], 'each frame completes exactly at its last byte');
  t.same(framesOf(got), [
    { id: 1, type: 1, payload: 'first' },
    { id: 3, type: 2, payload: '' },
    { id: 5, type: 3, payload: 'x'.repeat(300) },
  ]);
});

t.test('random chunking over many frames gives the same result', async (t) => {
  const payloads = Array.from({ length: 200 }, (_, i) => Buffer.alloc(i * 37 % 1000, i & 0xff));
  const wire = Buffer.concat(payloads.map((p, i) => encodeFrame(2 * i + 1, 1, p)));
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = 0; round < 5; round++) {
    const r = new FrameReader();
    const got: FrameEvent[] = [];
    for (let off = 0; off < wire.length; ) {
      const n = 1 + rnd(3000);
      got.push(...r.push(wire.subarray(off, off + n)));
      off += n;
    }
    t.equal(got.length, payloads.length, `round ${round}: frame count`);
    t.ok(
      got.every((e, i) => e.kind === 'frame' && e.header.streamId === 2 * i + 1 && e.payload.equals(payloads[i])),
      `round ${round}: frames intact`,
    );
  }
});

// TestMessageOversize
t.test('oversized frame: reported at its header, payload discarded unbuffered, stream stays in sync', async (t) => {
  const big = Buffer.alloc(MESSAGE_LENGTH_MAX + 1, 0x61);
  const wire = Buffer.concat([encodeFrame(1, 1, big), encodeFrame(3, 1, Buffer.from('next'))]);
  const r = new FrameReader();
  const first = r.push(wire.subarray(0, HEADER_LENGTH + 5));
  t.same(first, [{ kind: 'oversized', header: { length: MESSAGE_LENGTH_MAX + 1, streamId: 1, type: 1, flags: 0 } }]);
  t.equal(r.bufferedBytes, 0, 'discarded bytes are not held');
  t.equal(r.midFrame, true);
  const rest: FrameEvent[] = [];
  for (let off = HEADER_LENGTH + 5; off < wire.length; off += 65536) {
    rest.push(...r.push(wire.subarray(off, off + 65536)));
    if (off + 65536 < HEADER_LENGTH + big.length) t.equal(r.bufferedBytes, 0);
  }
  t.same(framesOf(rest), [{ id: 3, type: 1, payload: 'next' }]);
  t.equal(r.midFrame, false);
});

t.test('exactly the maximum is accepted', async (t) => {
  const r = new FrameReader();
  const ev = r.push(encodeFrame(1, 1, Buffer.alloc(MESSAGE_LENGTH_MAX)));
  t.equal(ev.length, 1);
  t.equal(ev[0].kind, 'frame');
});

t.test('a custom maximum applies', async (t) => {
  const r = new FrameReader(4);
  const ev = r.push(Buffer.concat([encodeFrame(1, 1, Buffer.from('12345')), encodeFrame(3, 1, Buffer.from('1234'))]));
  t.same(
    ev.map((e) => e.kind),
    ['oversized', 'frame'],
  );
});

t.test('huge declared length: only the header is ever needed', async (t) => {
  const r = new FrameReader();
  const ev = r.push(encodeHeader({ length: 0xfffffff0, streamId: 9, type: 1, flags: 0 }));
  t.equal(ev.length, 1);
  t.equal(ev[0].kind, 'oversized');
  t.equal(ev[0].header.length, 0xfffffff0);
  r.push(Buffer.alloc(1 << 20));
  t.equal(r.bufferedBytes, 0);
  t.equal(r.midFrame, true, 'still inside the discarded frame');
});

t.test('truncated input leaves the reader mid-frame', async (t) => {
  const f = encodeFrame(1, 1, Buffer.from('payload'));
  const r1 = new FrameReader();
  t.same(r1.push(f.subarray(0, 4)), []);
  t.equal(r1.midFrame, true, 'inside a header');
  const r2 = new FrameReader();
  t.same(r2.push(f.subarray(0, HEADER_LENGTH + 2)), []);
  t.equal(r2.midFrame, true, 'inside a payload');
  t.equal(r2.bufferedBytes, 2);
  t.same(framesOf(r2.push(f.subarray(HEADER_LENGTH + 2))), [{ id: 1, type: 1, payload: 'payload' }]);
});
