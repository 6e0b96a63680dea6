// The stdio factory: one place chooses by terminal and stdout URI scheme (fifo/path, file://,
// binary://); each kind delivers what the process writes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { native } from '../../shim/framework/native';
import { Reaper } from '../../shim/framework/reaper';
import { Code, TtrpcError } from '../../shim/framework/ttrpc/codes';
import { createIO, PipeIO, type IOContext } from '../../shim/runc/io';
import { BinaryIO } from '../../shim/runc/io-binary';
import { ConsoleIO } from '../../shim/runc/console';

const reaper = Reaper.start(native());
t.teardown(() => reaper.stop());
const log = { debug() {}, info() {}, warn() {}, error() {} } as unknown as IOContext['log'];
const ctx: IOContext = { id: 'c1', namespace: 'ns1', reaper, log };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-iof-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Play the container: write through the child ends of an io, as runc's child would. */
function writeAsChild(fd: number, data: string): void {
  fs.writeSync(fd, data);
}

t.test('a plain path is piped (fifo or file), file:// appends both streams to one file, creating its directory', async (t) => {
  const plain = await createIO({ stdin: '', stdout: path.join(tmp, 'plain.out'), stderr: path.join(tmp, 'plain.err'), terminal: false }, ctx);
  t.ok(plain instanceof PipeIO, 'no scheme: pipes');
  plain.close();

  const file = path.join(tmp, 'logs', 'sub', 'both.log');
  const io = await createIO({ stdin: '', stdout: `file://${file}`, stderr: `file://${file}`, terminal: false }, ctx);
  t.ok(io instanceof PipeIO, 'file:// is piped too');
  const [, out, err] = io.childFds;
  writeAsChild(out, 'to stdout\n');
  writeAsChild(err, 'to stderr\n');
  // Hand the child ends over (runc has them now) and let the copies run to EOF.
  const outDup = fs.openSync(`/proc/self/fd/${out}`, 'w');
  const errDup = fs.openSync(`/proc/self/fd/${err}`, 'w');
  await io.afterLaunch();
  writeAsChild(outDup, 'more stdout\n');
  fs.closeSync(outDup);
  fs.closeSync(errDup);
  t.equal(await io.drained(5000), true, 'both streams drained');
  const text = fs.readFileSync(file, 'utf8');
  for (const line of ['to stdout', 'to stderr', 'more stdout']) t.match(text, line);
  io.close();
});

t.test('binary:// starts the logger with fds 3, 4, 5, its query as argv, the container in its env', async (t) => {
  const dir = fs.mkdtempSync(path.join(tmp, 'bin-'));
  const logger = path.join(dir, 'logger');
  fs.writeFileSync(logger, `#!/bin/sh
echo "$* $CONTAINER_ID $CONTAINER_NAMESPACE" > ${dir}/meta
echo ready >&5
exec 5>&-
cat <&3 > ${dir}/out &
cat <&4 > ${dir}/err
wait
`, { mode: 0o755 });
  const io = await createIO({ stdin: '', stdout: `binary://${logger}?level=debug`, stderr: `binary://${logger}?level=debug`, terminal: false }, ctx);
  t.ok(io instanceof BinaryIO, 'binary:// gives a logging binary');
  t.equal(fs.readFileSync(path.join(dir, 'meta'), 'utf8').trim(), 'level debug c1 ns1', 'argv from the query; CONTAINER_ID and CONTAINER_NAMESPACE');
  const [, out, err] = io.childFds;
  writeAsChild(out, 'out-line\n');
  writeAsChild(err, 'err-line\n');
  await io.afterLaunch(); // our write ends closed: the logger sees EOF
  const end = Date.now() + 5000;
  // The logger's two cats start in either order: wait for both files to hold their line.
  const holds = (name: string) => fs.existsSync(path.join(dir, name)) && fs.readFileSync(path.join(dir, name), 'utf8').length > 0;
  while (Date.now() < end && !(holds('out') && holds('err'))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(fs.readFileSync(path.join(dir, 'out'), 'utf8'), 'out-line\n', 'stdout reached the logger on fd 3');
  t.equal(fs.readFileSync(path.join(dir, 'err'), 'utf8'), 'err-line\n', 'stderr reached the logger on fd 4');
  io.close();
});

t.test('a logger that cannot start is an error, not a hang', async (t) => {
  await t.rejects(createIO({ stdin: '', stdout: 'binary:///nonexistent/logger', stderr: '', terminal: false }, ctx), { code: 'ENOENT' });
});

t.test('an unknown scheme is InvalidArgument', async (t) => {
  try {
    await createIO({ stdin: '', stdout: 'gopher://x/y', stderr: '', terminal: false }, ctx);
    t.fail('must be refused');
  } catch (err) {
    t.ok(err instanceof TtrpcError);
    t.equal((err as TtrpcError).code, Code.InvalidArgument);
    t.match((err as Error).message, /unknown STDIO scheme gopher/);
  }
});

t.test('a terminal gets a console socket that takes the pty master runc sends, and cleans it up', async (t) => {
  const io = await createIO({ stdin: '', stdout: '', stderr: '', terminal: true }, ctx);
  t.ok(io instanceof ConsoleIO, 'terminal: console socket');
  t.ok(io.consoleSocket && fs.existsSync(io.consoleSocket), 'the socket exists for runc');
  t.same(io.childFds, [-1, -1, -1], 'runc itself gets /dev/null');
  // Play runc: connect and send an fd (any fd stands in for the pty master here).
  const stand = fs.openSync('/dev/null', 'r+');
  const sock = native().unixConnect(io.consoleSocket!);
  native().sendFd(sock, stand);
  await io.afterLaunch();
  native().closeFd(sock);
  fs.closeSync(stand);
  t.notOk(fs.existsSync(io.consoleSocket!), 'the console socket is gone once the master arrived');
  io.close();
});
