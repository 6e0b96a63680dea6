// containerd.task.v2.Task for runc containers: request validation, container registry, events.
import * as path from 'node:path';
import type { Logger } from '../framework/logger';
import { messageType, serviceDef } from '../framework/proto';
import { toTimestamp, type Publisher } from '../framework/publisher';
import type { Reaper } from '../framework/reaper';
import type { ServeContext } from '../framework/shim';
import { bindService, type CallContext, type TtrpcServer } from '../framework/ttrpc';
import { writeDeleteResponse } from './bundle';
import { Container, type CreateRequest, type ExecRequest } from './container';
import { ExecProcess } from './process/exec';
import { checkpointContainer, decodeCheckpointOptions } from './checkpoint';
import { alreadyExists, invalidArgument, notFound } from './errors';
import { statusOf, exitOf, type ExitInfo } from './process/state';

const TASK_SERVICE = 'containerd.task.v2.Task';
/** containerd 2.x's name for the same service (api/runtime/task/v3: the same messages, field for field). */
const TASK_SERVICE_V3 = 'containerd.task.v3.Task';

type Req = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class TaskService {
  private readonly containers = new Map<string, Container>();
  /** Ids whose Create is in flight: a second Create for one of them is AlreadyExists. */
  private readonly creating = new Set<string>();
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly logs: ServeContext['logs'];
  private readonly publisher: Publisher;
  private readonly reaper: Reaper;
  private readonly debug: boolean;
  private readonly requestShutdown: (isIdle?: () => boolean) => void;

  constructor(ctx: Pick<ServeContext, 'flags' | 'log' | 'logs' | 'publisher' | 'reaper' | 'shutdown'>) {
    this.namespace = ctx.flags.namespace;
    this.log = ctx.log;
    this.logs = ctx.logs;
    this.publisher = ctx.publisher;
    this.reaper = ctx.reaper;
    this.debug = ctx.flags.debug;
    this.requestShutdown = ctx.shutdown;
  }

  register(server: TtrpcServer): void {
    const def = serviceDef(TASK_SERVICE);
    const impl: Record<string, (req: Req, ctx: CallContext) => Promise<object>> = {
      Create: (r) => this.create(r),
      Start: (r) => this.start(r),
      Kill: (r) => this.kill(r),
      Wait: (r) => this.wait(r),
      State: (r) => this.state(r),
      Delete: (r) => this.delete(r),
      Pids: (r) => this.pids(r),
      CloseIO: (r) => this.closeIO(r),
      Connect: (r) => this.connect(r),
      Shutdown: () => this.shutdown(),
      Exec: (r) => this.exec(r),
      ResizePty: (r) => this.resizePty(r),
    };
    impl.Pause = (r) => this.pause(r);
    impl.Resume = (r) => this.resume(r);
    impl.Update = (r) => this.update(r);
    impl.Checkpoint = (r) => this.checkpoint(r);
    impl.Stats = (r) => this.stats(r);
    bindService(server, def, impl);
    bindService(server, def, impl, { name: TASK_SERVICE_V3 });
  }

  /** For the diagnostic dump: every container, and the Creates in flight. */
  describe(): object {
    return { containers: [...this.containers.values()].map((c) => c.describe()), creating: [...this.creating] };
  }

  private get(id: string): Container {
    if (!id) throw invalidArgument('container id must not be empty');
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id} not found`);
    return c;
  }

  private publish(topic: string, type: string, event: object): void {
    this.publisher.publish(this.namespace, topic, `containerd.events.${type}`, event);
  }

  private async create(r: Req) {
    const req = r as CreateRequest;
    if (!req.id) throw invalidArgument('container id must not be empty');
    if (this.containers.has(req.id) || this.creating.has(req.id)) throw alreadyExists(`container ${req.id} already exists`);
    this.creating.add(req.id);
    let c: Container;
    try {
      c = await Container.create(req, {
        namespace: this.namespace, reaper: this.reaper, log: this.log, debug: this.debug,
        publish: (topic, type, event) => this.publish(topic, type, event),
      });
    } finally {
      this.creating.delete(req.id);
    }
    this.containers.set(req.id, c);
    this.logs.add(path.join(req.bundle, 'log'));
    this.publish('/tasks/create', 'TaskCreate', {
      container_id: req.id,
      bundle: req.bundle,
      rootfs: req.rootfs,
      io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      checkpoint: req.checkpoint,
      pid: c.init.pid,
    });
    return { pid: c.init.pid };
  }

  private async start(r: Req) {
    const c = this.get(r.id);
    const p = c.process(r.exec_id);
    if (p instanceof ExecProcess) await c.startExec(p);
    else await p.start();
    return { pid: p.pid };
  }

  private async exec(r: Req) {
    const c = this.get(r.id);
    await c.addExec(r as ExecRequest);
    this.publish('/tasks/exec-added', 'TaskExecAdded', { container_id: c.id, exec_id: r.exec_id });
    return {};
  }

  private async kill(r: Req) {
    const p = this.get(r.id).process(r.exec_id);
    if (p instanceof ExecProcess) await p.kill(r.signal);
    else await p.kill(r.signal, r.all);
    return {};
  }

  private async wait(r: Req) {
    const exit = await this.get(r.id).process(r.exec_id).wait();
    return { exit_status: exit.status, exited_at: toTimestamp(exit.exitedAt) };
  }

  private async state(r: Req) {
    const c = this.get(r.id);
    const p = c.process(r.exec_id);
    const exit: ExitInfo | undefined = exitOf(p.state);
    // As the Go shim: a running exec of a frozen container is as frozen (paused/pausing) as its init.
    const frozen = p instanceof ExecProcess && p.state.kind === 'running' && (c.init.state.kind === 'paused' || c.init.state.kind === 'pausing');
    return {
      id: p.id,
      bundle: c.bundle,
      pid: p.pid,
      status: statusOf(frozen ? c.init.state : p.state),
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exit_status: exit?.status ?? 0,
      exited_at: exit ? toTimestamp(exit.exitedAt) : undefined,
      exec_id: r.exec_id ?? '',
    };
  }

  private async delete(r: Req) {
    const c = this.get(r.id);
    const p = c.process(r.exec_id);
    if (p instanceof ExecProcess) {
      // An exec's delete has no event of its own (as the Go shim).
      const exit = await c.deleteExec(p);
      return { pid: p.pid, exit_status: exit.status, exited_at: toTimestamp(exit.exitedAt) };
    }
    const { exit, cleanedUp } = await c.delete();
    this.containers.delete(c.id);
    this.logs.remove(path.join(c.bundle, 'log'));
    const at = toTimestamp(exit.exitedAt);
    const response = { pid: c.init.pid, exit_status: exit.status, exited_at: at };
    if (cleanedUp) this.leaveDeleteResponse(c.bundle, response);
    this.publish('/tasks/delete', 'TaskDelete', { container_id: c.id, pid: c.init.pid, exit_status: exit.status, exited_at: at, id: c.id });
    return response;
  }

  /** For containerd's `delete` after the disconnect: bin/ prints it instead of starting node. */
  private leaveDeleteResponse(bundle: string, response: object): void {
    const t = messageType('containerd.task.v2.DeleteResponse');
    try {
      writeDeleteResponse(bundle, t.encode(t.fromObject(response)).finish());
    } catch (err) {
      this.log.warn({ err, bundle }, 'cannot leave the delete response: containerd\'s delete will do the full cleanup');
    }
  }

  private async pids(r: Req) {
    const c = this.get(r.id);
    const pids = c.pids();
    const details = messageType('containerd.runc.v1.ProcessDetails');
    return {
      processes: pids.map((pid) => {
        const execId = c.execIdOf(pid);
        // As the Go shim: exec pids carry their exec id in a ProcessDetails.
        return execId
          ? { pid, info: { type_url: 'containerd.runc.v1.ProcessDetails', value: details.encode(details.fromObject({ exec_id: execId })).finish() } }
          : { pid };
      }),
    };
  }

  private async pause(r: Req) {
    const c = this.get(r.id);
    await c.init.pause();
    this.publish('/tasks/paused', 'TaskPaused', { container_id: c.id });
    return {};
  }

  private async resume(r: Req) {
    const c = this.get(r.id);
    await c.init.resume();
    this.publish('/tasks/resumed', 'TaskResumed', { container_id: c.id });
    return {};
  }

  private async update(r: Req) {
    const c = this.get(r.id);
    if (!r.resources?.value?.length) throw invalidArgument('update needs resources');
    await c.init.update(r.resources.value as Buffer);
    return {};
  }

  private async checkpoint(r: Req) {
    const c = this.get(r.id);
    if (!r.path) throw invalidArgument('checkpoint needs an image path');
    await checkpointContainer(c, r.path, decodeCheckpointOptions(r.options), this.reaper);
    this.publish('/tasks/checkpointed', 'TaskCheckpointed', { container_id: c.id, checkpoint: r.path });
    return {};
  }

  private async stats(r: Req) {
    const { typeUrl, metrics } = this.get(r.id).stats();
    const t = messageType(typeUrl);
    return { stats: { type_url: typeUrl, value: t.encode(t.fromObject(metrics)).finish() } };
  }

  private async resizePty(r: Req) {
    this.get(r.id).process(r.exec_id).resizePty(r.width, r.height);
    return {};
  }

  private async closeIO(r: Req) {
    const p = this.get(r.id).process(r.exec_id);
    if (r.stdin) p.closeStdin();
    return {};
  }

  private async connect(r: Req) {
    const c = this.containers.get(r.id);
    return { shim_pid: process.pid, task_pid: c?.init.pid ?? 0, version: '' };
  }

  private async shutdown() {
    // A grouped shim serves other containers still: it only goes when the last one is gone.
    const idle = () => this.containers.size === 0 && this.creating.size === 0;
    if (idle()) this.requestShutdown(idle);
    return {};
  }
}
