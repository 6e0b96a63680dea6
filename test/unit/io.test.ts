// ProcessIO with real fifos and files: byte-exact copies, EOF propagation, drained() with and
// without a lingering writer, stdin and CloseIO, fd hygiene, and stdout == stderr into one file.
//
// The "container" is simulated: the test takes its own copy of a child-side pipe end through
// /proc/self/fd (as runc would hold it), then writes with async fs.write (libuv's thread pool, so
// a full pipe never blocks the event loop that drains it).
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { PipeIO } from '../../shim/runc/io';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-io-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

let seq = 0;
function fifo(name: string): string {
  const p = path.join(dir, `${name}-${++seq}`);
  execFileSync('mkfifo', [p]);
  return p;
}

/** A second fd on the same pipe end, as the container holds it after runc hands it over. */
function takeChildEnd(fd: number, flags: 'r' | 'w'): number {
  return fs.openSync(`/proc/self/fd/${fd}`, flags);
}

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = 0;
    const step = (): void => {
      if (off >= data.length) return resolve();
      fs.write(fd, data, off, Math.min(65536 * 4, data.length - off), null, (err, n) => {
        if (err) return reject(err);
        off += n;
        step();
      });
    };
    step();
  });
}

/** Read a fifo from its own O_RDONLY end until EOF. */
function readFifo(p: string): { done: Promise<Buffer>; socket: net.Socket } {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const s = new net.Socket({ fd, readable: true, writable: false });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  return { done, socket: s };
}

/** Read a blocking fd (a pipe end) until EOF on the thread pool. */
function readFdToEnd(fd: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const step = (): void => {
      const b = Buffer.alloc(65536);
      fs.read(fd, b, 0, b.length, null, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return resolve(Buffer.concat(chunks));
        chunks.push(b.subarray(0, n));
        step();
      });
    };
    step();
  });
}

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); }),
  ]);
}

function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd').sort((a, b) => Number(a) - Number(b));
}

function fdTargets(fds: string[]): string[] {
  return fds.map((fd) => {
    try {
      return `${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return `${fd} -> ?`;
    }
  });
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 30));
};

t.test('stdout through a fifo: 1 MiB arrives byte-exact, then EOF', async (t) => {
  const out = fifo('out');
  const reader = readFifo(out);
  const io = PipeIO.create({ stdin: '', stdout: out, stderr: '', terminal: false });
  t.equal(io.childFds[0], -1, 'no stdin: /dev/null');
  t.equal(io.childFds[2], -1, 'no stderr: /dev/null');
  t.ok(io.childFds[1] >= 0);
  const writer = takeChildEnd(io.childFds[1], 'w');
  io.closeChildEnds();
  t.same(io.childFds, [-1, -1, -1], 'child ends released');
  io.startCopy();

  const data = crypto.randomBytes(1 << 20);
  await writeAll(writer, data);
  fs.closeSync(writer); // the container exits: EOF
  const got = await withTimeout(reader.done, 5000, 'EOF on the fifo reader');
  t.equal(got.length, data.length, 'length');
  t.equal(sha(got), sha(data), 'sha256');
  t.equal(await io.drained(2000), true, 'drained after EOF');
  io.close();
});

t.test('stdout and stderr to two fifos are kept apart, each byte-exact', async (t) => {
  const out = fifo('out');
  const err = fifo('err');
  const ro = readFifo(out);
  const re = readFifo(err);
  const io = PipeIO.create({ stdin: '', stdout: out, stderr: err, terminal: false });
  const wo = takeChildEnd(io.childFds[1], 'w');
  const we = takeChildEnd(io.childFds[2], 'w');
  io.closeChildEnds();
  io.startCopy();
  const dOut = crypto.randomBytes(300_000);
  const dErr = crypto.randomBytes(200_000);
  await Promise.all([writeAll(wo, dOut), writeAll(we, dErr)]);
  fs.closeSync(wo);
  fs.closeSync(we);
  const [gotOut, gotErr] = await withTimeout(Promise.all([ro.done, re.done]), 5000, 'EOF on both fifos');
  t.equal(sha(gotOut), sha(dOut));
  t.equal(sha(gotErr), sha(dErr));
  t.equal(await io.drained(2000), true);
  io.close();
});

t.test('the last bytes before exit reach the fifo even when written right before EOF', async (t) => {
  const out = fifo('out');
  const reader = readFifo(out);
  const io = PipeIO.create({ stdin: '', stdout: out, stderr: '', terminal: false });
  const writer = takeChildEnd(io.childFds[1], 'w');
  io.closeChildEnds();
  io.startCopy();
  fs.writeSync(writer, 'last words\n');
  fs.closeSync(writer);
  t.equal((await withTimeout(reader.done, 5000, 'EOF')).toString(), 'last words\n');
  io.close();
});

t.test('drained(): a writer that holds the pipe but went quiet is drained after ~100 ms, one that keeps writing is not', async (t) => {
  const out = fifo('out');
  const reader = readFifo(out);
  const io = PipeIO.create({ stdin: '', stdout: out, stderr: '', terminal: false });
  const writer = takeChildEnd(io.childFds[1], 'w'); // a background child that keeps stdout open
  io.closeChildEnds();
  io.startCopy();
  fs.writeSync(writer, 'still here');
  let t0 = Date.now();
  t.equal(await io.drained(2000), true, 'drained: what was written before is out, though the writer lives');
  let waited = Date.now() - t0;
  t.ok(waited >= 90 && waited < 1000, `after the quiet time, not the timeout (${waited} ms)`);
  // A writer that keeps writing never goes quiet: the timeout bounds the wait.
  const chatter = setInterval(() => fs.writeSync(writer, '.'), 20);
  t0 = Date.now();
  t.equal(await io.drained(300), false, 'not drained while output keeps coming');
  waited = Date.now() - t0;
  t.ok(waited >= 290 && waited < 1000, `returned at the timeout (${waited} ms)`);
  clearInterval(chatter);
  fs.closeSync(writer);
  t.equal(await io.drained(2000), true, 'drained once the last writer closed');
  const text = (await withTimeout(reader.done, 5000, 'EOF')).toString();
  t.ok(text.startsWith('still here') && /^still here\.+$/.test(text), 'everything arrived, in order');
  io.close();
});

t.test('drained() with nothing to copy is true at once', async (t) => {
  const io = PipeIO.create({ stdin: '', stdout: '', stderr: '', terminal: false });
  t.same(io.childFds, [-1, -1, -1]);
  io.startCopy();
  t.equal(await io.drained(10), true);
  io.close();
});

t.test('stdin: fifo data reaches the child; CloseIO gives the child EOF', async (t) => {
  const inp = fifo('in');
  const io = PipeIO.create({ stdin: inp, stdout: '', stderr: '', terminal: false });
  const childIn = takeChildEnd(io.childFds[0], 'r');
  io.closeChildEnds();
  io.startCopy();
  const received = readFdToEnd(childIn);
  // containerd's side of the stdin fifo
  const client = fs.openSync(inp, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  fs.writeSync(client, 'hello from containerd\n');
  fs.closeSync(client);
  // containerd closed its end, but the shim still holds the fifo: no EOF until CloseIO.
  const early = await Promise.race([received.then(() => 'eof'), new Promise((r) => setTimeout(() => r('open'), 150))]);
  t.equal(early, 'open', 'no EOF before CloseIO');
  io.closeStdin();
  const got = await withTimeout(received, 5000, 'EOF on the child stdin');
  t.equal(got.toString(), 'hello from containerd\n');
  fs.closeSync(childIn);
  io.close();
});

t.test('stdout to a regular file: created, appended to, byte-exact', async (t) => {
  const file = path.join(dir, `out-${++seq}.log`);
  fs.writeFileSync(file, 'existing\n');
  const io = PipeIO.create({ stdin: '', stdout: file, stderr: '', terminal: false });
  const writer = takeChildEnd(io.childFds[1], 'w');
  io.closeChildEnds();
  io.startCopy();
  const data = crypto.randomBytes(1 << 20);
  await writeAll(writer, data);
  fs.closeSync(writer);
  t.equal(await io.drained(5000), true);
  const got = fs.readFileSync(file);
  t.equal(got.subarray(0, 9).toString(), 'existing\n', 'appended, not truncated');
  t.equal(sha(got.subarray(9)), sha(data));
  io.close();

  const fresh = path.join(dir, `fresh-${++seq}.log`);
  const io2 = PipeIO.create({ stdin: '', stdout: fresh, stderr: '', terminal: false });
  const w2 = takeChildEnd(io2.childFds[1], 'w');
  io2.closeChildEnds();
  io2.startCopy();
  fs.writeSync(w2, 'new file');
  fs.closeSync(w2);
  t.equal(await io2.drained(2000), true);
  t.equal(fs.readFileSync(fresh, 'utf8'), 'new file');
  io2.close();
});

for (const order of ['stdout first', 'stderr first'] as const) {
  t.test(`stdout == stderr regular file keeps both streams' data (${order} reaches EOF)`, async (t) => {
    const file = path.join(dir, `combined-${++seq}.log`);
    const io = PipeIO.create({ stdin: '', stdout: file, stderr: file, terminal: false });
    const wo = takeChildEnd(io.childFds[1], 'w');
    const we = takeChildEnd(io.childFds[2], 'w');
    io.closeChildEnds();
    io.startCopy();
    // Each stream's data fits in a pipe buffer (64 KiB), so a copy that stops reading makes this
    // test fail instead of blocking the writer (and the test) forever.
    const O = Buffer.alloc(40_000, 'O');
    const E = Buffer.alloc(30_000, 'E');
    const [first, firstData, second, secondData] = order === 'stdout first' ? [wo, O, we, E] : [we, E, wo, O];
    await writeAll(first, firstData.subarray(0, 1000));
    await writeAll(second, secondData.subarray(0, 1000));
    await new Promise((r) => setTimeout(r, 50));
    await writeAll(first, firstData.subarray(1000));
    fs.closeSync(first);
    await new Promise((r) => setTimeout(r, 100)); // the first stream's EOF is fully processed
    await writeAll(second, secondData.subarray(1000)); // the other stream keeps writing after that
    fs.closeSync(second);
    t.equal(await io.drained(5000), true, 'drained');
    const got = fs.readFileSync(file);
    const count = (c: number): number => got.reduce((n, b) => n + (b === c ? 1 : 0), 0);
    t.equal(count(0x4f), O.length, 'all of stdout is in the file');
    t.equal(count(0x45), E.length, 'all of stderr is in the file');
    t.equal(got.length, O.length + E.length, 'nothing else');
    io.close();
  });
}

t.test('close() leaves no fd open', async (t) => {
  // Warm-up: Node/libuv open a few fds lazily, once per process (e.g. /dev/null), the first time a
  // fifo is wrapped in a net.Socket. One full cycle first, so the baseline already has them.
  {
    const warm = PipeIO.create({ stdin: fifo('in'), stdout: '', stderr: '', terminal: false });
    warm.startCopy();
    warm.closeChildEnds();
    await settle();
    warm.close();
  }
  await settle();
  const before = openFds();

  // created, never started
  PipeIO.create({ stdin: fifo('in'), stdout: fifo('out'), stderr: fifo('err'), terminal: false }).close();
  await settle();
  t.same(fdTargets(openFds()), fdTargets(before), 'after create + close');

  // started on fifos, child ends never closed by the caller, copies still running
  {
    const out = fifo('out');
    const err = fifo('err');
    const ro = readFifo(out);
    const re = readFifo(err);
    const io = PipeIO.create({ stdin: fifo('in'), stdout: out, stderr: err, terminal: false });
    io.startCopy();
    io.close();
    await settle();
    ro.socket.destroy();
    re.socket.destroy();
    await settle();
    t.same(fdTargets(openFds()), fdTargets(before), 'after startCopy + close mid-copy');
  }

  // a full run: data, EOF, drained, close
  {
    const out = fifo('out');
    const ro = readFifo(out);
    const file = path.join(dir, `errlog-${++seq}`);
    const io = PipeIO.create({ stdin: fifo('in'), stdout: out, stderr: file, terminal: false });
    const wo = takeChildEnd(io.childFds[1], 'w');
    const we = takeChildEnd(io.childFds[2], 'w');
    io.closeChildEnds();
    io.startCopy();
    fs.writeSync(wo, 'o');
    fs.writeSync(we, 'e');
    fs.closeSync(wo);
    fs.closeSync(we);
    t.equal(await io.drained(2000), true);
    await withTimeout(ro.done, 2000, 'EOF');
    io.closeStdin();
    io.close();
    await settle();
    t.same(fdTargets(openFds()), fdTargets(before), 'after a full run');
  }

  // stdout == stderr file
  {
    const file = path.join(dir, `both-${++seq}`);
    const io = PipeIO.create({ stdin: '', stdout: file, stderr: file, terminal: false });
    io.closeChildEnds();
    io.startCopy();
    t.equal(await io.drained(2000), true);
    io.close();
    await settle();
    t.same(fdTargets(openFds()), fdTargets(before), 'after a shared-file run');
  }

  // close twice is harmless
  const io = PipeIO.create({ stdin: '', stdout: fifo('out'), stderr: '', terminal: false });
  io.close();
  t.doesNotThrow(() => io.close());
  await settle();
  t.same(fdTargets(openFds()), fdTargets(before), 'after double close');
});
