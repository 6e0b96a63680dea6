// framework/launch.ts: the pieces of a `start` that stays on as the daemon, without containerd.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { EarlyConnections, START_STATUS_ENV, StartStatus } from '../../shim/framework/launch';
import { native } from '../../shim/framework/native';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-launch-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('EarlyConnections: what arrives before the daemon serves is held, unread, and handed over in order', async (t) => {
  const sock = path.join(dir, 'early.sock');
  const listener = net.createServer();
  await new Promise<void>((res) => listener.listen(sock, res));
  t.teardown(() => listener.close());
  const early = new EarlyConnections(listener);

  // containerd dials and sends its first request at once.
  const clients = [0, 1, 2].map((i) => {
    const c = net.connect(sock);
    c.on('connect', () => c.write(`request ${i}\n`));
    return c;
  });
  t.teardown(() => clients.forEach((c) => c.destroy()));
  await new Promise((r) => setTimeout(r, 200)); // accepted by now, with nobody serving

  const seen: string[] = [];
  let handedOver = 0;
  early.handOver(() => {
    listener.on('connection', (s: net.Socket) => {
      const n = handedOver++;
      s.on('data', (d) => seen.push(`${n}:${d.toString().trim()}`));
    });
  });
  await new Promise((r) => setTimeout(r, 200));
  t.equal(handedOver, 3, 'all three connections reached the daemon\'s listener');
  t.same(seen.sort(), ['0:request 0', '1:request 1', '2:request 2'], 'with the bytes they sent before it served');

  const late = net.connect(sock);
  t.teardown(() => late.destroy());
  await new Promise((r) => late.on('connect', r));
  await new Promise((r) => setTimeout(r, 100));
  t.equal(handedOver, 4, 'a later connection goes to the daemon directly (the hold is gone)');
});

t.test('StartStatus: the exit status on the launcher\'s fd, once; the variable is gone from the environment', async (t) => {
  const [r, w] = native().pipe();
  process.env[START_STATUS_ENV] = String(w);
  const exitHooks = process.listenerCount('exit');
  const status = StartStatus.fromEnv();
  t.equal(process.listenerCount('exit'), exitHooks + 1, 'an exit hook reports whatever status the process ends with');
  t.ok(status, 'found');
  t.equal(process.env[START_STATUS_ENV], undefined, 'not passed on to children');
  status!.report(7);
  status!.report(0); // a second report is ignored: the fd is closed
  const buf = Buffer.alloc(16);
  t.equal(buf.subarray(0, fs.readSync(r, buf)).toString(), '7');
  t.equal(fs.readSync(r, buf), 0, 'then EOF: the launcher stops waiting');
  fs.closeSync(r);
  t.equal(process.listenerCount('exit'), exitHooks, 'and is gone once the status was reported');

  process.env[START_STATUS_ENV] = '1';
  t.equal(StartStatus.fromEnv(), undefined, 'fds 0-2 are never taken for the status');
  t.equal(StartStatus.fromEnv(), undefined, 'no variable: run by hand');
});
