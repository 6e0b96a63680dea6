// Run only while the startup snapshot is built (bundle-entry.ts): one round of what every daemon
// does for its first container — ttrpc frames in and out, the Task API's request and response
// codecs, the event outbox forwarding to containerd, pino's JSON lines — over real unix sockets,
// with canned answers in place of runc. V8 keeps the bytecode of functions that ran in the
// snapshot; a function first called at run time is compiled from source then, in every shim, on
// the path of the first container. Nothing of it stays alive: the sockets, servers and log file
// are closed and removed before the snapshot is taken.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openFifoLogger } from './framework/logger';
import { messageType, serviceDef } from './framework/proto';
import { RemotePublisher, toTimestamp } from './framework/publisher';
import { TtrpcClient, TtrpcServer, bindService, typedCall } from './framework/ttrpc';

const NAMESPACE = 'warmup';
const ID = 'warmup';

export async function warmUp(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-warmup-'));
  try {
    await roundTrip(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function roundTrip(dir: string): Promise<void> {
  fs.writeFileSync(path.join(dir, 'log'), '');
  const { log, sink } = openFifoLogger(path.join(dir, 'log'), true, { namespace: NAMESPACE, id: ID });

  // containerd's side of events.
  const events = new TtrpcServer({ logger: log });
  bindService(events, serviceDef('containerd.services.events.ttrpc.v1.Events'), { Forward: async () => ({}) });
  const eventsListener = await listen(events, path.join(dir, 'events.sock'));
  const publisher = new RemotePublisher(path.join(dir, 'events.sock'), log);

  // The Task API with canned answers.
  const now = new Date();
  const at = toTimestamp(now);
  const task = new TtrpcServer({ logger: log });
  const TASK = serviceDef('containerd.task.v2.Task');
  bindService(task, TASK, {
    Create: async () => ({ pid: 4242 }),
    Start: async () => ({ pid: 4242 }),
    State: async () => ({ id: ID, bundle: dir, pid: 4242, status: 2, stdout: '/x/1-stdout', stderr: '/x/1-stderr', exited_at: at }),
    Wait: async () => ({ exit_status: 0, exited_at: at }),
    Exec: async () => ({}),
    Kill: async () => ({}),
    Pids: async () => ({ processes: [{ pid: 4242 }] }),
    Delete: async () => ({ pid: 4242, exit_status: 0, exited_at: at }),
    Connect: async () => ({ shim_pid: process.pid, task_pid: 4242, version: '' }),
    Shutdown: async () => ({}),
  });
  const taskListener = await listen(task, path.join(dir, 'task.sock'));

  const client = await TtrpcClient.connect(path.join(dir, 'task.sock'));
  const opts = { timeoutMs: 10_000, metadata: { 'containerd-namespace-ttrpc': NAMESPACE } };
  const any = (typeUrl: string, value: Uint8Array) => ({ type_url: typeUrl, value });
  const runcOptions = messageType('containerd.runc.v1.Options');
  const io = { stdin: '', stdout: path.join(dir, 'stdout'), stderr: path.join(dir, 'stderr'), terminal: false };
  await typedCall(client, TASK, 'Connect', { id: ID }, opts);
  await typedCall(client, TASK, 'Create', {
    id: ID, bundle: dir, ...io,
    rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/a', 'upperdir=/b', 'workdir=/c'] }],
    options: any('containerd.runc.v1.Options', runcOptions.encode(runcOptions.fromObject({ binary_name: 'runc' })).finish()),
  }, opts);
  log.info({ bundle: dir }, 'warm-up');
  publisher.publish(NAMESPACE, '/tasks/create', 'TaskCreate', { container_id: ID, bundle: dir, rootfs: [], io: { ...io }, pid: 4242 });
  await typedCall(client, TASK, 'Start', { id: ID }, opts);
  publisher.publish(NAMESPACE, '/tasks/start', 'TaskStart', { container_id: ID, pid: 4242 });
  await typedCall(client, TASK, 'State', { id: ID, exec_id: '' }, opts);
  const execSpec = { terminal: false, args: ['true'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } };
  await typedCall(client, TASK, 'Exec', {
    id: ID, exec_id: 'e1', ...io, spec: any('types.containerd.io/opencontainers/runtime-spec/1/Process', Buffer.from(JSON.stringify(execSpec))),
  }, opts);
  publisher.publish(NAMESPACE, '/tasks/exec-added', 'TaskExecAdded', { container_id: ID, exec_id: 'e1' });
  await typedCall(client, TASK, 'Start', { id: ID, exec_id: 'e1' }, opts);
  publisher.publish(NAMESPACE, '/tasks/exec-started', 'TaskExecStarted', { container_id: ID, exec_id: 'e1', pid: 4243 });
  const waited = typedCall(client, TASK, 'Wait', { id: ID, exec_id: 'e1' }, opts);
  await typedCall(client, TASK, 'Pids', { id: ID }, opts);
  await typedCall(client, TASK, 'Kill', { id: ID, exec_id: '', signal: 15, all: false }, opts);
  await waited;
  publisher.publish(NAMESPACE, '/tasks/exit', 'TaskExit', { container_id: ID, id: 'e1', pid: 4243, exit_status: 0, exited_at: now });
  await typedCall(client, TASK, 'Delete', { id: ID, exec_id: 'e1' }, opts);
  publisher.publish(NAMESPACE, '/tasks/exit', 'TaskExit', { container_id: ID, id: ID, pid: 4242, exit_status: 0, exited_at: now });
  await typedCall(client, TASK, 'Delete', { id: ID }, opts);
  publisher.publish(NAMESPACE, '/tasks/delete', 'TaskDelete', { container_id: ID, pid: 4242, exit_status: 0, exited_at: at, id: ID });
  await typedCall(client, TASK, 'Shutdown', { id: ID, now: false }, opts);

  client.close();
  taskListener.close();
  await task.shutdown();
  await publisher.close(5000);
  eventsListener.close();
  await events.shutdown();
  sink.close();
  // Node schedules a new timer only when it is due before the earliest one it believes armed; a
  // cleared timer leaves that belief in place until a timer fires. Carried into the snapshot, the
  // stale value (seconds into this build) kept every later timer of a shim from being armed:
  // runc deadlines never fired and `delete` exited before its runc call finished. One timer that
  // fires resets it.
  await new Promise((resolve) => setTimeout(resolve, 1));
}

function listen(server: TtrpcServer, sock: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const listener = net.createServer();
    listener.once('error', reject);
    listener.listen(sock, () => {
      server.serve(listener);
      resolve(listener);
    });
  });
}
