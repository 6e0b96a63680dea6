// Issue "runcts runs containers for a real containerd": the task lifecycle events a shim
// publishes, as `ctr events` sees them.
import t from 'tap';
import { BUSYBOX_IMAGE, EventStream, expectCode, scenario, sleep } from './harness';

const TASK_TOPICS = ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'];

scenario(t, 'ctr events: create, start, exit, delete once each, in order', async (t, { cd, runtime, id }) => {
  const events = await EventStream.start(cd);
  t.teardown(() => events.stop());
  const cid = id('events');
  const r = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, cid, 'sh', '-c', 'exit 7']);
  expectCode(t, r, 7, 'ctr run --rm');

  const del = await events.waitFor(e => e.topic === '/tasks/delete' && e.payload?.container_id === cid, 15_000);
  t.ok(del, '/tasks/delete seen', { other: events.other });
  // containerd's own /containers/delete follows the task's delete; once it is in, any
  // duplicate task event would have arrived before it (one ordered stream).
  await events.waitFor(e => e.topic === '/containers/delete' && e.payload?.id === cid, 5_000);
  await sleep(200);

  const mine = events.forContainer(cid);
  const taskEvents = mine.filter(e => e.topic.startsWith('/tasks/'));
  t.same(
    taskEvents.map(e => e.topic),
    TASK_TOPICS,
    'exactly /tasks/create, /tasks/start, /tasks/exit, /tasks/delete, in that order',
    { events: mine.map(e => e.raw) },
  );
  const byTopic = new Map(taskEvents.map(e => [e.topic, e.payload ?? {}]));
  const create = byTopic.get('/tasks/create');
  const start = byTopic.get('/tasks/start');
  const exit = byTopic.get('/tasks/exit');
  const delEv = byTopic.get('/tasks/delete');
  if (!create || !start || !exit || !delEv) return;

  const pid = create.pid;
  t.ok(typeof pid === 'number' && pid > 0, 'TaskCreate carries the init pid');
  t.equal(start.pid, pid, 'TaskStart: same pid');
  t.equal(exit.pid, pid, 'TaskExit: same pid');
  t.equal(delEv.pid, pid, 'TaskDelete: same pid');
  t.equal(exit.id, cid, "TaskExit id is the init process's id (the container id)");
  t.equal(exit.exit_status, 7, 'TaskExit exit_status');
  t.equal(delEv.exit_status, 7, 'TaskDelete exit_status');
  t.ok(typeof exit.exited_at === 'string', 'TaskExit exited_at');
  t.equal(delEv.exited_at, exit.exited_at, 'TaskDelete exited_at equals TaskExit exited_at');
  t.equal(create.bundle, `${cd.taskStateDir()}/${cid}`, 'TaskCreate bundle');
  t.match(create.io, { stdout: /\S/, stderr: /\S/ }, 'TaskCreate io');
  t.ok(Array.isArray(create.rootfs) && (create.rootfs as unknown[]).length === 1, 'TaskCreate rootfs: the overlay mount');
  t.ok(
    taskEvents.every(e => e.namespace === cd.namespace),
    'all in our namespace',
  );
});
