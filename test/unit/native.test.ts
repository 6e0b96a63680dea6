// The native addon: spawn's fd map, signals, errors, cwd/env/setsid, and the fd helpers.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tty from 'node:tty';
import t from 'tap';
import { native, type SpawnOptions } from '../../shim/framework/native';
import { Reaper, type Exit } from '../../shim/framework/reaper';

const n = native();
const ENV = ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'];
const isRoot = process.getuid?.() === 0;

const reaper = Reaper.start(n);
t.teardown(() => reaper.stop());

function readAll(fd: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** Run a child with stdout and stderr on a pipe; resolve with its exit and its output. */
async function run(args: string[], o: Partial<SpawnOptions> = {}): Promise<{ exit: Exit; out: string }> {
  const [r, w] = n.pipe();
  let child;
  try {
    child = reaper.spawn({ file: args[0], args, env: ENV, fds: [-1, w, w], ...o });
  } catch (err) {
    n.closeFd(r);
    throw err;
  } finally {
    n.closeFd(w);
  }
  const out = readAll(r);
  return { exit: await child.exited, out: await out };
}

function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd').sort();
}

function children(): number[] {
  const out: number[] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const s = fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim();
    if (s) out.push(...s.split(/\s+/).map(Number));
  }
  return out;
}

function sessionOf(pid: number | 'self'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
}

function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return parseInt(m![1], 8);
}

const O_CLOEXEC = 0o2000000;

t.test('spawn maps fds exactly: fd 3 is our pipe, -1 is /dev/null, nothing else is open', async (t) => {
  const [r3, w3] = n.pipe();
  const ino = fs.fstatSync(r3).ino;
  t.throws(() => reaper.spawn({ file: '/bin/true', args: ['true'], env: ENV, fds: [-2] }), TypeError, 'fds entries are fds or -1');
  const [r, w] = n.pipe();
  const child = reaper.spawn({
    file: '/bin/sh',
    args: ['sh', '-c', 'echo via-fd-3 >&3; ls /proc/$$/fd; readlink /proc/$$/fd/0 /proc/$$/fd/3; true'],
    env: ENV,
    fds: [-1, w, w, w3],
  });
  n.closeFd(w);
  n.closeFd(w3);
  const [out, via3, exit] = await Promise.all([readAll(r), readAll(r3), child.exited]);
  t.equal(exit.status, 0);
  t.equal(via3, 'via-fd-3\n');
  t.equal(out, `0\n1\n2\n3\n/dev/null\npipe:[${ino}]\n`);
});

t.test('spawn handles fd maps whose sources overlap their targets (a swap, an identity)', async (t) => {
  const [pr, pw] = n.pipe();
  const [qr, qw] = n.pipe();
  const [sr, sw] = n.pipe();
  // Child fd pw gets q's write end and child fd qw gets p's: a naive dup2 sequence would
  // overwrite one source before it is used. Child fd sw is sw itself: dup2(sw, sw) would be a
  // no-op that keeps CLOEXEC, and the child would not have it.
  const fds: number[] = new Array(Math.max(pw, qw, sw) + 1).fill(-1);
  fds[pw] = qw;
  fds[qw] = pw;
  fds[sw] = sw;
  // bash: dash only redirects fds 0-9.
  const script = `echo to-${pw} >&${pw}; echo to-${qw} >&${qw}; echo to-${sw} >&${sw}`;
  const child = reaper.spawn({ file: '/bin/bash', args: ['bash', '-c', script], env: ENV, fds });
  for (const fd of [pw, qw, sw]) n.closeFd(fd);
  const [p, q, s, exit] = await Promise.all([readAll(pr), readAll(qr), readAll(sr), child.exited]);
  t.equal(exit.status, 0);
  t.equal(p, `to-${qw}\n`, 'p received what the child wrote to fd qw');
  t.equal(q, `to-${pw}\n`, 'q received what the child wrote to fd pw');
  t.equal(s, `to-${sw}\n`, 'an identity entry survives exec');
});

t.test('spawn leaves only the mapped fds open: fd 2 is gone with a two-entry map', async (t) => {
  const { exit, out } = await run(['/bin/sh', '-c', 'ls /proc/$$/fd; true'], { fds: [-1, -1] });
  t.equal(exit.status, 0);
  t.equal(out, '', 'stdout is /dev/null');
  // Node marks every fd it has CLOEXEC (libuv opens with O_CLOEXEC, and node startup sets it on
  // inherited ones), so the closefrom(fds.length) file action is a second line of defence that
  // Node cannot observe; this checks the visible outcome.
  const [r, w] = n.pipe();
  const child = reaper.spawn({ file: '/bin/sh', args: ['sh', '-c', 'ls /proc/$$/fd; true'], env: ENV, fds: [-1, w] });
  n.closeFd(w);
  const [listing] = await Promise.all([readAll(r), child.exited]);
  t.equal(listing, '0\n1\n');
});

t.test('the child starts with no blocked and no ignored signals (SIGPIPE included)', async (t) => {
  const ours = fs.readFileSync('/proc/self/status', 'utf8');
  const ign = BigInt('0x' + /^SigIgn:\s+([0-9a-f]+)$/m.exec(ours)![1]);
  t.ok(ign & (1n << 12n), 'precondition: Node ignores SIGPIPE (13)');
  const { exit, out } = await run(['/bin/grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status']);
  t.equal(exit.status, 0);
  // All 64 bits, glibc's internal signals 32 and 33 included (plain sigfillset would leave those ignored).
  t.equal(out, 'SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n');
});

t.test('a missing binary throws ENOENT and leaves no fd and no process behind', async (t) => {
  const fdsBefore = openFds();
  const kidsBefore = children();
  const [r, w] = n.pipe();
  for (const file of ['/nonexistent/runcts-binary', 'runcts-no-such-binary-in-path']) {
    try {
      reaper.spawn({ file, args: [file], env: ENV, fds: [-1, w, w] });
      t.fail('spawn should throw');
    } catch (err) {
      t.ok(err instanceof Error, 'a real Error');
      t.match(err, { code: 'ENOENT', errno: -2, syscall: 'posix_spawn', path: file });
      t.match((err as Error).message, /^ENOENT: .*posix_spawn/);
    }
  }
  n.closeFd(r);
  n.closeFd(w);
  t.same(openFds(), fdsBefore, 'no fd leaked');
  t.same(children(), kidsBefore, 'no child (or zombie) left');
  t.equal(reaper.unclaimedCount, 0);

  try {
    reaper.spawn({ file: '/bin/true', args: ['true'], env: ENV, fds: [], cwd: '/nonexistent/cwd' });
    t.fail('spawn should throw');
  } catch (err) {
    t.match(err, { code: 'ENOENT', syscall: 'chdir', path: '/nonexistent/cwd' });
  }
  try {
    reaper.spawn({ file: '/bin/true', args: ['true'], env: ENV, fds: [987654] });
    t.fail('spawn should throw');
  } catch (err) {
    t.match(err, { code: 'EBADF', syscall: 'fcntl' });
  }
  t.same(openFds(), fdsBefore, 'no fd leaked');
});

t.test('cwd and env are honoured exactly', async (t) => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-cwd-')));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const a = await run(['/bin/sh', '-c', 'pwd; echo "$FOO"'], { cwd: dir, env: [...ENV, 'FOO=bar baz'] });
  t.equal(a.out, `${dir}\nbar baz\n`);
  const b = await run(['/usr/bin/env'], { env: ['A=1', 'B=two words'] });
  t.equal(b.out, 'A=1\nB=two words\n', 'the environment is exactly the given one');
  const c = await run(['sh', '-c', 'echo "$0"'], { file: 'sh' });
  t.equal(c.out, 'sh\n', 'a bare name is looked up in PATH');
});

t.test('setsid starts a new session; without it the child stays in ours', async (t) => {
  const ours = sessionOf('self');
  const script = 'echo $$; cut -d" " -f6 /proc/$$/stat';
  const a = await run(['/bin/sh', '-c', script], { setsid: true });
  const [pidA, sidA] = a.out.trim().split('\n').map(Number);
  t.equal(sidA, pidA, 'session leader of its own session');
  t.not(sidA, ours);
  const b = await run(['/bin/sh', '-c', script]);
  t.equal(Number(b.out.trim().split('\n')[1]), ours);
});

t.test('pipe() gives CLOEXEC ends that carry data', async (t) => {
  const [r, w] = n.pipe();
  t.ok(fdFlags(r) & O_CLOEXEC);
  t.ok(fdFlags(w) & O_CLOEXEC);
  fs.writeSync(w, 'x');
  const buf = Buffer.alloc(1);
  t.equal(fs.readSync(r, buf), 1);
  t.equal(buf.toString(), 'x');
  n.closeFd(r);
  n.closeFd(w);
  t.throws(() => n.closeFd(w), { code: 'EBADF', syscall: 'close' });
  t.throws(() => n.closeFd(-1), TypeError);
});

t.test('lockExclusive takes a flock another open file description cannot get', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-lock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'lock');
  const fd = fs.openSync(file, 'w');
  n.lockExclusive(fd);
  const held = await run(['/usr/bin/flock', '-n', '-x', file, 'true']);
  t.equal(held.exit.status, 1, 'flock -n fails while we hold the lock');
  fs.closeSync(fd);
  const free = await run(['/usr/bin/flock', '-n', '-x', file, 'true']);
  t.equal(free.exit.status, 0, 'free after close');
});

t.test('mount and umount (MNT_DETACH)', { skip: !isRoot && 'needs root' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-mnt-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const mounted = (): boolean => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
  n.mount('tmpfs', dir, 'tmpfs', 0, 'size=1m');
  t.ok(mounted());
  fs.writeFileSync(path.join(dir, 'f'), 'x');
  n.umount(dir, 2);
  t.notOk(mounted());
  t.notOk(fs.existsSync(path.join(dir, 'f')));
  t.throws(() => n.mount('tmpfs', path.join(dir, 'missing'), 'tmpfs', 0, ''), { code: 'ENOENT', syscall: 'mount' });
  t.throws(() => n.umount(dir, 0), { code: 'EINVAL', syscall: 'umount2', path: dir });
});

t.test('setWinsize sets a pty size', async (t) => {
  const fd = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  n.setWinsize(fd, 33, 111);
  const s = new tty.WriteStream(fd);
  t.same(s.getWindowSize(), [111, 33]);
  s.destroy();
  const [r, w] = n.pipe();
  t.throws(() => n.setWinsize(r, 1, 1), { code: 'ENOTTY', syscall: 'ioctl' });
  n.closeFd(r);
  n.closeFd(w);
});

t.test('eventfd with watchReadable: the callback runs when the counter is written', async (t) => {
  const efd = n.eventfd();
  t.ok(fdFlags(efd) & O_CLOEXEC);
  const buf = Buffer.alloc(8);
  t.throws(() => fs.readSync(efd, buf), { code: 'EAGAIN' }, 'non-blocking');
  const counts: bigint[] = [];
  const done = new Promise<void>((resolve) => {
    const watch = n.watchReadable(efd, (err) => {
      t.equal(err, undefined);
      fs.readSync(efd, buf);
      counts.push(buf.readBigUInt64LE());
      if (counts.length === 2) {
        watch.close();
        watch.close();
        resolve();
      } else {
        setImmediate(() => fs.writeSync(efd, u64(2)));
      }
    });
  });
  fs.writeSync(efd, u64(5));
  fs.writeSync(efd, u64(1));
  await done;
  t.same(counts, [6n, 2n]);
  n.closeFd(efd);
});

function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

t.test('unix socket fd passing (runc --console-socket): listen, accept, recvFd', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-sock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'console.sock');
  const lfd = n.unixListen(sock);
  t.equal(n.accept(lfd), null, 'nothing pending');
  const accepted = new Promise<number>((resolve) => {
    const watch = n.watchReadable(lfd, () => {
      const c = n.accept(lfd);
      if (c === null) return;
      watch.close();
      resolve(c);
    });
  });
  const client = n.unixConnect(sock);
  const conn = await accepted;
  t.equal(n.recvFd(conn), null, 'nothing sent yet');

  const [pr, pw] = n.pipe();
  const received = new Promise<number>((resolve) => {
    const watch = n.watchReadable(conn, () => {
      const fd = n.recvFd(conn);
      if (fd === null) return;
      watch.close();
      resolve(fd);
    });
  });
  n.sendFd(client, pw);
  const got = await received;
  t.not(got, pw);
  t.ok(fdFlags(got) & O_CLOEXEC, 'received fd is CLOEXEC');
  fs.writeSync(got, 'through the passed fd');
  n.closeFd(got);
  n.closeFd(pw);
  t.equal(await readAll(pr), 'through the passed fd');

  n.closeFd(client);
  t.throws(() => n.recvFd(conn), { code: 'ENOMSG' }, 'peer closed without an fd');
  n.closeFd(conn);
  n.closeFd(lfd);
  t.throws(() => n.unixConnect(path.join(dir, 'missing.sock')), { code: 'ENOENT', syscall: 'connect' });
});

t.test('watchReadable refuses a non-function callback and a bad fd', async (t) => {
  t.throws(() => n.watchReadable(0, 'nope' as unknown as () => void), TypeError);
  t.throws(() => n.watchReadable(987654, () => undefined), { code: 'EBADF' });
});
