// Nobody else on the shim's socket: the socket file is 0600 in a 0700 directory, a user without
// privileges cannot connect at all, and a process of another uid that can reach the file anyway
// (CAP_DAC_OVERRIDE) is closed by the daemon's SO_PEERCRED check without being served, while
// containerd's own connection is served throughout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { messageType } from '../../shim/framework/proto';
import { SOCKET_DIR } from '../../shim/framework/socket';
import { NOBODY, connectAsNobody, requestFrame } from '../unit/harness/peer';
import { DIRECT_NS, DirectShims, waitGone } from './harness';

let shims: DirectShims;
t.before(async () => {
  shims = await DirectShims.create(t);
});

/** A Task/Connect request as containerd sends it. */
function connectFrame(): Buffer {
  const req = messageType('containerd.task.v2.ConnectRequest');
  return requestFrame('containerd.task.v2.Task', 'Connect', Buffer.from(req.encode({ id: '' }).finish()), {
    'containerd-namespace-ttrpc': DIRECT_NS,
  });
}

t.test('the shim socket: 0600 in a 0700 directory, another uid is refused, ours is served', async (t) => {
  const events = shims.events('socket');
  await events.listen();
  t.teardown(() => events.close());
  const id = 'sock';
  const bundle = shims.bundle(id, ['true']);
  const shim = await shims.startAndConnect(t, bundle, id, events.socket);
  const sock = shim.address.replace('unix://', '');

  t.equal(path.dirname(sock), SOCKET_DIR);
  t.equal(fs.statSync(sock).mode & 0o777, 0o600, 'socket file mode 0600');
  t.equal(fs.statSync(SOCKET_DIR).mode & 0o077, 0, `${SOCKET_DIR} is closed to group and others`);

  const plain = await connectAsNobody(sock, connectFrame());
  t.same([plain.connected, plain.error], [false, 'EACCES'], 'a user without privileges cannot even connect');

  const logBefore = fs.readFileSync(path.join(bundle, 'log'), 'utf8').length;
  const fdsBefore = fs.readdirSync(`/proc/${shim.pid}/fd`).length;
  // A well-formed Connect from uid 65534 that gets past the file mode: closed unanswered.
  const [intruder, ours] = await Promise.all([
    connectAsNobody(sock, connectFrame(), { dacOverride: true }),
    shim.call('Connect', { id: '' }),
  ]);
  t.equal(intruder.uid, NOBODY, `the intruder ran as uid ${NOBODY} (${intruder.error ?? 'connected'})`);
  t.ok(intruder.connected, 'it did connect (CAP_DAC_OVERRIDE)');
  t.equal(intruder.got, 0, 'not one byte came back to it');
  t.notOk(intruder.open, 'the shim closed its connection');
  t.equal(ours.shim_pid, shim.pid, 'containerd\'s connection is served meanwhile');
  const log = fs.readFileSync(path.join(bundle, 'log'), 'utf8').slice(logBefore);
  t.match(log, `refusing a connection from uid ${NOBODY}`, 'the shim logs the refusal with the peer\'s uid');
  t.equal(fs.readdirSync(`/proc/${shim.pid}/fd`).length, fdsBefore, 'the refused connection left no fd behind');

  // Many at once: none served, the daemon keeps serving us.
  const many = await Promise.all(Array.from({ length: 20 }, () => connectAsNobody(sock, connectFrame(), { dacOverride: true })));
  t.ok(many.every((o) => o.connected && o.got === 0 && !o.open), '20 concurrent intruders: all closed unanswered', { many });
  t.equal((await shim.call('Connect', { id: '' })).shim_pid, shim.pid, 'still served');

  await shim.call('Shutdown', { id, now: false });
  t.ok(await waitGone(shim.pid), 'shim exits after Shutdown');
});

t.test('nothing is left behind', async (t) => {
  await shims.assertNothingLeft(t, 1);
});
