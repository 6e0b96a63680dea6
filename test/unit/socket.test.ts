// The shim socket helpers: containerd's socket naming, atomic file publication (DESIGN lesson 2),
// the bundle's address file, liveness probing and listening.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { native } from '../../shim/framework/native';
import { TtrpcClient, TtrpcServer } from '../../shim/framework/ttrpc';
import { NOBODY, connectAsNobody, requestFrame } from './harness/peer';
import {
  SOCKET_DIR,
  canConnect,
  ensureSocketDir,
  listenUnix,
  sameUserOnly,
  readAddress,
  removeSocket,
  serverFd,
  socketAddress,
  socketPath,
  writeAddress,
  writeFileAtomic,
} from '../../shim/framework/socket';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-socket-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

// --- naming ---------------------------------------------------------------------------------------

/** Go's path/filepath.Clean for unix paths (lexical), written from its documentation. */
function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const body = out.join('/');
  if (rooted) return `/${body}`;
  return body === '' ? '.' : body;
}

/** Go's filepath.Join: the non-empty elements joined by "/" and cleaned; "" when all are empty. */
function goJoin(...elems: string[]): string {
  const nonEmpty = elems.filter((e) => e !== '');
  return nonEmpty.length === 0 ? '' : goClean(nonEmpty.join('/'));
}

/** runtime/v2/shim/util_unix.go SocketAddress: fmt.Sprintf("unix://%s/%x", filepath.Join(socketRoot, "s"), sha256.Sum256(filepath.Join(socketPath, ns, id))). */
function goSocketAddress(socketPathArg: string, ns: string, id: string, socketRoot = '/run/containerd'): string {
  const d = crypto.createHash('sha256').update(Buffer.from(goJoin(socketPathArg, ns, id), 'utf8')).digest('hex');
  return `unix://${goJoin(socketRoot, 's')}/${d}`;
}

t.test('goClean/goJoin agree with Go\'s documented examples', async (t) => {
  // From path/filepath's Clean and Join docs.
  t.equal(goClean('/../a/b/../././/c'), '/a/c');
  t.equal(goClean('a/../..'), '..');
  t.equal(goJoin('a', 'b', 'c'), 'a/b/c');
  t.equal(goJoin('a', ''), 'a');
  t.equal(goJoin('', ''), '');
  t.equal(goJoin('a/', 'b'), 'a/b');
  t.equal(goJoin('a/b', '../../../xyz'), '../xyz');
});

t.test('socketAddress: the hand-computed vector', async (t) => {
  // printf '%s' /run/containerd/containerd.sock/default/abc | sha256sum
  t.equal(
    socketAddress('/run/containerd/containerd.sock', 'default', 'abc'),
    'unix:///run/containerd/s/8cb244a719603fe00870d5ce1d8e1f1db43a654cb993d107df1f1ae23ddffa59',
  );
  // printf '%s' /run/containerd/containerd.sock/k8s.io/4f2a | sha256sum
  t.equal(
    socketAddress('/run/containerd/containerd.sock', 'k8s.io', '4f2a'),
    'unix:///run/containerd/s/0645f0b382f458286a59ad2b301969d48dfe869522039ace3e9a4dc42e5a00f8',
  );
  t.equal(SOCKET_DIR, '/run/containerd/s');
});

t.test('socketAddress equals containerd\'s Go formula for many inputs', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['/run/containerd/containerd.sock', 'default', 'abc'],
    ['/run/containerd/containerd.sock', 'k8s.io', 'a'.repeat(64)],
    ['/run/containerd/containerd.sock', 'moby', 'c0ffee-1.2_3'],
    ['/tmp/runcts-it/containerd.sock', 'default', 'sandbox'],
    ['/run/containerd/containerd.sock/', 'default', 'abc'], // trailing slash cleaned
    ['/run//containerd///containerd.sock', 'default', 'abc'], // duplicate slashes cleaned
    ['/run/containerd/../containerd/containerd.sock', 'default', 'abc'], // .. cleaned
    ['run/containerd.sock', 'default', 'abc'], // relative address
    ['/run/containerd/containerd.sock', 'ñs', 'ïd'], // non-ASCII hashed as UTF-8
  ];
  for (const [addr, ns, id] of cases) {
    t.equal(socketAddress(addr, ns, id), goSocketAddress(addr, ns, id), `${addr} ${ns} ${id}`);
  }
  // the cleaned variants collapse onto the canonical one
  t.equal(socketAddress('/run/containerd/containerd.sock/', 'default', 'abc'), socketAddress('/run/containerd/containerd.sock', 'default', 'abc'));
});

t.test('socketAddress: distinct identities give distinct sockets; dir is configurable', async (t) => {
  const a = socketAddress('/run/containerd/containerd.sock', 'default', 'abc');
  t.not(socketAddress('/run/containerd/containerd.sock', 'other', 'abc'), a);
  t.not(socketAddress('/run/containerd/containerd.sock', 'default', 'abd'), a);
  t.not(socketAddress('/run/c2/containerd.sock', 'default', 'abc'), a);
  t.match(a, /^unix:\/\/\/run\/containerd\/s\/[0-9a-f]{64}$/);
  t.ok(socketPath(a).length < 106, 'fits sun_path with containerd\'s limit');
  const custom = socketAddress('/run/containerd/containerd.sock', 'default', 'abc', '/tmp/x/s');
  t.equal(custom, `unix:///tmp/x/s/${a.slice(a.lastIndexOf('/') + 1)}`);
  t.equal(goSocketAddress('/run/containerd/containerd.sock', 'default', 'abc', '/tmp/x'), custom);
});

t.test('socketPath strips unix:// and leaves plain paths alone', async (t) => {
  t.equal(socketPath('unix:///run/containerd/s/abc'), '/run/containerd/s/abc');
  t.equal(socketPath('/run/containerd/s/abc'), '/run/containerd/s/abc');
  t.equal(socketPath('unix://\0abstract'), '\0abstract');
});

// --- writeFileAtomic --------------------------------------------------------------------------------

const READER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { file, size, flag } = workerData;
const stop = new Int32Array(flag);
const stats = { reads: 0, missing: 0, complete: 0, torn: 0, versions: new Set(), tornSamples: [] };
const trailer = Buffer.from('END!');
parentPort.postMessage('ready');
while (Atomics.load(stop, 0) === 0) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if (err.code === 'ENOENT') { stats.missing++; continue; }
    throw err;
  }
  stats.reads++;
  const ok = buf.length === size
    && buf.subarray(size - 4).equals(trailer)
    && buf[8] === buf[size >> 1] && buf[8] === buf[size - 5];
  if (ok) {
    stats.complete++;
    stats.versions.add(buf.readUInt32BE(0));
  } else {
    stats.torn++;
    if (stats.tornSamples.length < 5) stats.tornSamples.push(buf.length);
  }
}
parentPort.postMessage({ ...stats, versions: stats.versions.size });
`;

interface ReaderStats {
  reads: number;
  missing: number;
  complete: number;
  torn: number;
  versions: number;
  tornSamples: number[];
}

async function withReader(file: string, size: number, write: () => void): Promise<ReaderStats> {
  const flag = new SharedArrayBuffer(4);
  const worker = new Worker(READER_SOURCE, { eval: true, workerData: { file, size, flag } });
  const messages: unknown[] = [];
  let onMessage: (() => void) | undefined;
  worker.on('message', (m) => { messages.push(m); onMessage?.(); });
  const next = (): Promise<unknown> => new Promise((resolve, reject) => {
    if (messages.length > 0) return resolve(messages.shift());
    onMessage = () => { onMessage = undefined; resolve(messages.shift()); };
    worker.once('error', reject);
  });
  if ((await next()) !== 'ready') throw new Error('reader did not start');
  await new Promise((r) => setTimeout(r, 20)); // let the reader spin
  write();
  await new Promise((r) => setTimeout(r, 20));
  Atomics.store(new Int32Array(flag), 0, 1);
  const stats = (await next()) as ReaderStats;
  await worker.terminate();
  return stats;
}

function payload(version: number, size: number): Buffer {
  const b = Buffer.alloc(size, 1 + (version % 250));
  b.writeUInt32BE(version, 0);
  b.writeUInt32BE(size, 4);
  b.write('END!', size - 4);
  return b;
}

t.test('writeFileAtomic: a concurrent reader sees complete content or nothing across 200 writes', async (t) => {
  const file = path.join(dir, 'atomic-big');
  const size = 1 << 20;
  const stats = await withReader(file, size, () => {
    for (let i = 1; i <= 200; i++) writeFileAtomic(file, payload(i, size));
  });
  t.equal(stats.torn, 0, `no partial file seen (sizes ${stats.tornSamples.join(',')})`);
  t.ok(stats.reads > 20, `the reader really ran concurrently (${stats.reads} reads, ${stats.missing} before the first write)`);
  t.ok(stats.versions >= 2, `and saw several versions (${stats.versions})`);
  t.same(fs.readFileSync(file), payload(200, size), 'the last write is the content');
  t.same(fs.readdirSync(dir).filter((n) => n.startsWith('atomic-big')), ['atomic-big'], 'no temporary file left behind');
});

t.test('control: the same reader does catch a non-atomic writer', async (t) => {
  // Proves the reader above can see a torn file: truncate, write half, pause, write the rest.
  const file = path.join(dir, 'torn');
  const size = 1 << 20;
  const stats = await withReader(file, size, () => {
    for (let i = 1; i <= 50; i++) {
      const b = payload(i, size);
      const fd = fs.openSync(file, 'w');
      fs.writeSync(fd, b, 0, size / 2);
      const until = Date.now() + 3;
      while (Date.now() < until) { /* the reader gets a window on the half-written file */ }
      fs.writeSync(fd, b, size / 2, size / 2, size / 2);
      fs.closeSync(fd);
    }
  });
  t.ok(stats.torn > 0, `torn reads detected (${stats.torn} of ${stats.reads})`);
});

t.test('writeFileAtomic: string and bytes, overwrite, mode, no temporary left', async (t) => {
  const file = path.join(dir, 'small');
  writeFileAtomic(file, 'first');
  t.equal(fs.readFileSync(file, 'utf8'), 'first');
  writeFileAtomic(file, Uint8Array.from([0, 1, 2, 255]));
  t.same([...fs.readFileSync(file)], [0, 1, 2, 255]);
  writeFileAtomic(file, 'ünïcødé');
  t.equal(fs.readFileSync(file, 'utf8'), 'ünïcødé');
  writeFileAtomic(file, '');
  t.equal(fs.readFileSync(file, 'utf8'), '', 'an empty file is a valid content');
  const secret = path.join(dir, 'secret');
  writeFileAtomic(secret, 'x', 0o600);
  t.equal(fs.statSync(secret).mode & 0o777, 0o600);
  t.equal(fs.statSync(file).mode & 0o777, 0o644 & ~process.umask());
  t.same(fs.readdirSync(dir).filter((n) => n.includes('.tmp')), [], 'no temporary files');
});

t.test('writeFileAtomic: a failed rename leaves the target as it was, its neighbours alone, and no temporary file', async (t) => {
  const sub = path.join(dir, 'ro-target');
  fs.mkdirSync(sub);
  const file = path.join(sub, 'f');
  writeFileAtomic(file, 'old');
  // A directory where the file should go makes the rename fail after the temp file was written.
  const blocked = path.join(sub, 'blocked');
  fs.mkdirSync(blocked);
  fs.writeFileSync(path.join(blocked, 'keep'), 'x');
  t.throws(() => writeFileAtomic(blocked, 'new'));
  t.equal(fs.readFileSync(file, 'utf8'), 'old');
  t.ok(fs.statSync(blocked).isDirectory());
  t.same(fs.readdirSync(sub).sort(), ['blocked', 'f'], 'the failed write left no temporary file behind');
});

// --- address file -----------------------------------------------------------------------------------

t.test('writeAddress/readAddress round-trip through <bundle>/address', async (t) => {
  const bundle = fs.mkdtempSync(path.join(dir, 'bundle-'));
  t.equal(readAddress(bundle), undefined, 'no address file yet');
  const addr = socketAddress('/run/containerd/containerd.sock', 'default', 'abc');
  writeAddress(bundle, addr);
  t.equal(fs.readFileSync(path.join(bundle, 'address'), 'utf8'), addr, 'written exactly, as containerd reads it');
  t.equal(readAddress(bundle), addr);
  writeAddress(bundle, 'unix:///run/containerd/s/other');
  t.equal(readAddress(bundle), 'unix:///run/containerd/s/other', 'overwritten');
  fs.writeFileSync(path.join(bundle, 'address'), `${addr}\n`);
  t.equal(readAddress(bundle), addr, 'a trailing newline (written by another tool) is trimmed');
  t.same(fs.readdirSync(bundle), ['address'], 'nothing else in the bundle');
  t.equal(readAddress(path.join(dir, 'no-such-bundle')), undefined);
});

// --- sockets ----------------------------------------------------------------------------------------

function sock(name: string): string {
  return path.join(dir, name);
}

function closeServer(s: net.Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

t.test('canConnect: true for a listening socket', async (t) => {
  const p = sock('live.sock');
  const server = net.createServer((c) => c.destroy());
  await new Promise<void>((r) => server.listen(p, () => r()));
  t.equal(await canConnect(p), true);
  t.equal(await canConnect(p, 200), true);
  await closeServer(server);
  t.equal(await canConnect(p), false, 'false once it stopped listening');
});

t.test('canConnect: false for a missing path, a stale socket file and a regular file', async (t) => {
  t.equal(await canConnect(sock('missing.sock')), false);
  const regular = sock('regular');
  fs.writeFileSync(regular, '');
  t.equal(await canConnect(regular), false);
  // A stale socket, as a crashed shim leaves it: the file exists, nobody listens. Bind and listen
  // through the addon, then close the fd: nothing unlinks the path.
  const stale = sock('stale.sock');
  const fd = native().unixListen(stale);
  native().closeFd(fd);
  t.ok(fs.existsSync(stale), 'the stale socket file exists');
  t.ok(fs.statSync(stale).isSocket());
  t.equal(await canConnect(stale), false);
});

t.test('listenUnix: listens and hands out its fd', async (t) => {
  const p = sock('listen.sock');
  const server = await listenUnix(p);
  t.equal(server.address(), p);
  const fd = serverFd(server);
  t.ok(Number.isInteger(fd) && fd > 2, `fd ${fd}`);
  t.ok(fs.fstatSync(fd).isSocket());
  t.equal(await canConnect(p), true);
  await closeServer(server);
});

t.test('listenUnix: the socket file is 0600 from the start whatever the umask, and the umask is given back', async (t) => {
  const before = process.umask(0);
  t.teardown(() => { process.umask(before); });
  const p = sock('private.sock');
  const server = await listenUnix(p);
  t.equal(fs.statSync(p).mode & 0o777, 0o600, 'mode 0600 under umask 0');
  t.equal(process.umask(), 0, 'our umask is as it was');
  await closeServer(server);
});

t.test('ensureSocketDir: makes the directory 0700, tightens one open to others, leaves a private one alone', async (t) => {
  const fresh = path.join(dir, 'sockdir', 'nested');
  ensureSocketDir(fresh);
  t.equal(fs.statSync(fresh).mode & 0o777, 0o700, 'created 0700');
  const open = path.join(dir, 'sockdir-open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o755);
  ensureSocketDir(open);
  t.equal(fs.statSync(open).mode & 0o777, 0o700, '0755 tightened to 0700');
  const goShims = path.join(dir, 'sockdir-go');
  fs.mkdirSync(goShims);
  fs.chmodSync(goShims, 0o600); // containerd's Go shim creates it with MkdirAll(dir, 0600)
  ensureSocketDir(goShims);
  t.equal(fs.statSync(goShims).mode & 0o777, 0o600, 'a directory closed to others is left as it is');
});

t.test('sameUserOnly: a ttrpc server serves its own uid and closes a connection from another uid unread (SO_PEERCRED)', async (t) => {
  if (process.geteuid?.() !== 0) {
    t.fail('needs root (to connect as another uid)');
    return;
  }
  const open = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-peer-'));
  t.teardown(() => fs.rmSync(open, { recursive: true, force: true }));
  fs.chmodSync(open, 0o755);
  const p = path.join(open, 'peer.sock');
  const warnings: object[] = [];
  const server = new TtrpcServer({ accept: sameUserOnly(native().peerCredentials, (o) => warnings.push(o)) });
  let served = 0;
  server.register('test.Echo', { Echo: async (b) => { served++; return b; } });
  const listener = await listenUnix(p);
  fs.chmodSync(p, 0o666); // let another uid reach the socket file: the peer check must still refuse it
  server.serve(listener);
  t.teardown(() => server.close());

  // A well-formed ttrpc request frame (service test.Echo, method Echo, payload "hi").
  const client = await TtrpcClient.connect(p);
  t.same(await client.call('test.Echo', 'Echo', Buffer.from('hi')), Buffer.from('hi'), 'our own uid is served');
  client.close();
  const seen = await connectAsNobody(p, requestFrame('test.Echo', 'Echo', Buffer.from('hi')));
  t.equal(seen.uid, NOBODY, `the client ran as uid ${NOBODY} (${seen.error ?? 'no error'})`);
  t.equal(seen.got, 0, 'it got no byte back');
  t.notOk(seen.open, 'its connection was closed by the server');
  t.equal(served, 1, 'its request never reached the handler');
  t.match(warnings, [{ peer: { uid: NOBODY, gid: NOBODY } }], 'the refusal is logged with the peer\'s credentials');

  const refused = sameUserOnly(() => ({ pid: 1, uid: 1000, gid: 0 }), () => {}, 0);
  const accepted = sameUserOnly(() => ({ pid: 1, uid: 0, gid: 1000 }), () => {}, 0);
  const fake = { _handle: { fd: 7 } } as unknown as net.Socket;
  t.equal(refused(fake), false, 'another uid, same gid: refused');
  t.equal(accepted(fake), true, 'same uid, another gid: served (the rule is the user)');
  t.equal(accepted({} as net.Socket), false, 'a socket without an fd: refused');
});

t.test('listenUnix: EADDRINUSE when the path exists (live socket, stale socket, regular file)', async (t) => {
  const live = sock('inuse.sock');
  const first = await listenUnix(live);
  await t.rejects(listenUnix(live), { code: 'EADDRINUSE' }, 'a live shim owns it');
  t.equal(await canConnect(live), true, 'the first listener is unaffected');
  const stale = sock('inuse-stale.sock');
  native().closeFd(native().unixListen(stale));
  await t.rejects(listenUnix(stale), { code: 'EADDRINUSE' }, 'a crashed shim\'s socket file');
  t.ok(fs.statSync(stale).isSocket(), 'and it is not removed behind the caller\'s back');
  const regular = sock('inuse-regular');
  fs.writeFileSync(regular, 'x');
  await t.rejects(listenUnix(regular), { code: 'EADDRINUSE' });
  t.equal(fs.readFileSync(regular, 'utf8'), 'x', 'the existing file is left alone');
  await closeServer(first);
});

t.test('removeSocket: removes by address or path; a missing one is fine; other errors surface', async (t) => {
  const p = sock('remove.sock');
  const server = await listenUnix(p);
  server.close();
  fs.writeFileSync(p, ''); // whatever is there
  removeSocket(`unix://${p}`);
  t.notOk(fs.existsSync(p));
  t.doesNotThrow(() => removeSocket(`unix://${p}`));
  t.doesNotThrow(() => removeSocket(p));
  const d = sock('a-directory');
  fs.mkdirSync(d);
  t.throws(() => removeSocket(d), { code: /^(EISDIR|EPERM)$/ });
});
