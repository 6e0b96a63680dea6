// The daemon's log destination (framework/logger.ts FifoLogSink): real fifos, readers played by
// the test the way containerd reads a bundle's `log` fifo.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { FifoLogSink, openFifoLogger } from '../../shim/framework/logger';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-logger-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
let seq = 0;

/** A fifo with a reader open on it, as containerd holds each container's `log`. */
function fifoWithReader(): { fifo: string; read(): string; close(): void } {
  const fifo = path.join(dir, `log-${++seq}`);
  const r = spawnSync('mkfifo', [fifo]);
  if (r.status !== 0) throw new Error(`mkfifo: ${r.stderr}`);
  const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  let open = true;
  return {
    fifo,
    read() {
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(65536);
      for (;;) {
        try {
          const n = fs.readSync(fd, buf);
          if (n <= 0) break;
          chunks.push(Buffer.from(buf.subarray(0, n)));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
          throw err;
        }
      }
      return Buffer.concat(chunks).toString();
    },
    close() {
      if (open) fs.closeSync(fd);
      open = false;
    },
  };
}

t.test('lines go to the fifo containerd reads; a later container\'s fifo takes over once the first is deleted', async (t) => {
  const a = fifoWithReader();
  const b = fifoWithReader();
  t.teardown(() => { a.close(); b.close(); });
  const sink = new FifoLogSink();
  sink.add(a.fifo);
  sink.write('one\n');
  sink.add(b.fifo);
  sink.write('two\n');
  t.equal(a.read(), 'one\ntwo\n', 'the first fifo stays while it works');
  t.equal(b.read(), '', 'nothing in the second yet');
  sink.remove(a.fifo);
  sink.write('three\n');
  t.equal(a.read(), '', 'nothing more in the deleted container\'s fifo');
  t.equal(b.read(), 'three\n', 'the live container\'s fifo has it');
  sink.close();
});

t.test('a fifo containerd stopped reading (EPIPE): the same line goes to another one, none lost', async (t) => {
  const a = fifoWithReader();
  const b = fifoWithReader();
  const c = fifoWithReader();
  t.teardown(() => { a.close(); b.close(); c.close(); });
  const sink = new FifoLogSink();
  for (const f of [a, b, c]) sink.add(f.fifo);
  sink.write('first\n');
  t.equal(a.read(), 'first\n');
  a.close(); // containerd disconnected for that container
  sink.write('second\n');
  t.equal(c.read(), 'second\n', 'the newest live fifo has the line that hit EPIPE');
  c.close();
  sink.write('third\n');
  t.equal(b.read(), 'third\n', 'then the next one');
  b.close();
  sink.write('fourth\n');
  t.equal(sink.dropped, 1, 'with no reader left the line is dropped (counted), without an error');
  // containerd restarted: it opens the fifos of the containers again.
  const again = fs.openSync(b.fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(again));
  sink.write('fifth\n');
  const buf = Buffer.alloc(100);
  t.equal(buf.subarray(0, fs.readSync(again, buf)).toString(), 'fifth\n', 'the kept fifo is read again after a containerd restart');
  sink.close();
});

t.test('the last container\'s fifo is kept after its delete (the daemon\'s last lines go there)', async (t) => {
  const a = fifoWithReader();
  t.teardown(() => a.close());
  const sink = new FifoLogSink();
  sink.add(a.fifo);
  sink.remove(a.fifo);
  sink.write('shim shutting down\n');
  t.equal(a.read(), 'shim shutting down\n');
  sink.close();
});

t.test('a fifo nobody holds open is skipped at once (no blocking open)', async (t) => {
  const lonely = path.join(dir, 'no-reader');
  spawnSync('mkfifo', [lonely]);
  const a = fifoWithReader();
  t.teardown(() => a.close());
  const sink = new FifoLogSink();
  const started = Date.now();
  sink.add(lonely);
  sink.write('lost\n');
  t.ok(Date.now() - started < 1000, 'add and write returned at once');
  t.equal(sink.dropped, 1, 'the line is counted as dropped');
  sink.add(a.fifo);
  sink.write('kept\n');
  t.equal(a.read(), 'kept\n', 'the fifo with a reader gets the lines from then on');
  sink.close();
});

t.test('a full fifo never blocks the shim: whole lines are dropped and counted', async (t) => {
  const a = fifoWithReader();
  t.teardown(() => a.close());
  const sink = new FifoLogSink();
  sink.add(a.fifo);
  const line = `${'y'.repeat(1000)}\n`;
  const started = Date.now();
  for (let i = 0; i < 200; i++) sink.write(line); // 200 kB into a 64 kB pipe nobody drains
  t.ok(Date.now() - started < 2000, 'writes returned although nobody read');
  t.ok(sink.dropped > 0, `lines dropped: ${sink.dropped}`);
  const got = a.read();
  t.equal(got.length % line.length, 0, 'only whole lines arrived');
  t.equal(got.length / line.length + sink.dropped, 200, 'every line either arrived or was counted as dropped');
  sink.write('after\n');
  t.equal(a.read(), 'after\n', 'writes resume once containerd read');

  sink.close();
});

t.test('a line longer than a pipe holds is written in parts while containerd reads', async (t) => {
  const fifo = path.join(dir, 'long');
  spawnSync('mkfifo', [fifo]);
  const out = path.join(dir, 'long.out');
  const cat = spawn('sh', ['-c', `exec cat ${fifo} > ${out}`], { stdio: 'ignore' });
  const exited = new Promise((r) => cat.on('exit', r));
  const sink = new FifoLogSink();
  // The reader must be there before the sink's non-blocking open.
  const deadline = Date.now() + 5000;
  let fd = -1;
  while (fd < 0 && Date.now() < deadline) {
    try {
      fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  t.ok(fd >= 0, 'cat reads the fifo');
  sink.add(fifo);
  fs.closeSync(fd);
  const long = `${'z'.repeat(200_000)}\n`;
  sink.write(long);
  sink.close();
  await exited;
  t.equal(fs.readFileSync(out, 'utf8'), long, 'the long line arrived whole');
  t.equal(sink.dropped, 0);
});

t.test('openFifoLogger: pino JSON lines with the bindings, through the sink', async (t) => {
  const a = fifoWithReader();
  t.teardown(() => a.close());
  const { log, sink } = openFifoLogger(a.fifo, false, { namespace: 'ns', id: 'c1' });
  log.info({ extra: 1 }, 'hello');
  log.debug('not at info level');
  const lines = a.read().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines.length, 1);
  t.match(lines[0], { msg: 'hello', extra: 1, namespace: 'ns', id: 'c1', pid: process.pid, level: 30 });
  sink.close();
});
