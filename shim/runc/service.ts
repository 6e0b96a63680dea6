// containerd.task.v2.Task for runc containers: request validation, container registry, events.
import type { Logger } from '../framework/logger';
import { serviceDef } from '../framework/proto';
import { toTimestamp, type Publisher } from '../framework/publisher';
import type { Reaper } from '../framework/reaper';
import type { ServeContext } from '../framework/shim';
import { bindService, type CallContext, type TtrpcServer } from '../framework/ttrpc';
import { Container, type CreateRequest } from './container';
import { alreadyExists, invalidArgument, notFound, unimplemented } from './errors';
import { statusOf, exitOf, type ExitInfo } from './process/state';

const TASK_SERVICE = 'containerd.task.v2.Task';

type Req = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class TaskService {
  private readonly containers = new Map<string, Container>();
  /** Ids whose Create is in flight: a second Create for one of them is AlreadyExists. */
  private readonly creating = new Set<string>();
  private readonly namespace: string;
  private readonly log: Logger;
  private readonly publisher: Publisher;
  private readonly reaper: Reaper;
  private readonly debug: boolean;
  private readonly requestShutdown: () => void;

  constructor(ctx: Pick<ServeContext, 'flags' | 'log' | 'publisher' | 'reaper' | 'shutdown'>) {
    this.namespace = ctx.flags.namespace;
    this.log = ctx.log;
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
    };
    for (const name of ['Exec', 'ResizePty', 'Pause', 'Resume', 'Checkpoint', 'Update', 'Stats']) {
      impl[name] = async () => { throw unimplemented(`${name} is not implemented by this shim yet`); };
    }
    bindService(server, def, impl);
  }

  private get(id: string): Container {
    if (!id) throw invalidArgument('container id must not be empty');
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id} not found`);
    return c;
  }

  /** Only init processes so far: any exec id names a process that does not exist. */
  private initOf(r: Req): Container {
    const c = this.get(r.id);
    if (r.exec_id) throw notFound(`process ${r.exec_id} not found in container ${r.id}`);
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
      c = await Container.create(req, { namespace: this.namespace, reaper: this.reaper, log: this.log, debug: this.debug }, {
        started: (pid) => this.publish('/tasks/start', 'TaskStart', { container_id: req.id, pid }),
        exited: (pid, exit) => this.publish('/tasks/exit', 'TaskExit', {
          container_id: req.id, id: req.id, pid, exit_status: exit.status, exited_at: toTimestamp(exit.exitedAt),
        }),
      });
    } finally {
      this.creating.delete(req.id);
    }
    this.containers.set(req.id, c);
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
    const c = this.initOf(r);
    await c.init.start();
    return { pid: c.init.pid };
  }

  private async kill(r: Req) {
    const c = this.initOf(r);
    await c.init.kill(r.signal, r.all);
    return {};
  }

  private async wait(r: Req) {
    const c = this.initOf(r);
    const exit = await c.init.wait();
    return { exit_status: exit.status, exited_at: toTimestamp(exit.exitedAt) };
  }

  private async state(r: Req) {
    const c = this.initOf(r);
    const p = c.init;
    const exit: ExitInfo | undefined = exitOf(p.state);
    return {
      id: c.id,
      bundle: c.bundle,
      pid: p.pid,
      status: statusOf(p.state),
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exit_status: exit?.status ?? 0,
      exited_at: exit ? toTimestamp(exit.exitedAt) : undefined,
      exec_id: '',
    };
  }

  private async delete(r: Req) {
    const c = this.initOf(r);
    const exit = await c.delete(this.log);
    this.containers.delete(c.id);
    const at = toTimestamp(exit.exitedAt);
    this.publish('/tasks/delete', 'TaskDelete', { container_id: c.id, pid: c.init.pid, exit_status: exit.status, exited_at: at, id: c.id });
    return { pid: c.init.pid, exit_status: exit.status, exited_at: at };
  }

  private async pids(r: Req) {
    const c = this.get(r.id);
    const pids = await c.init.pids();
    return { processes: pids.map((pid) => ({ pid })) };
  }

  private async closeIO(r: Req) {
    const c = this.initOf(r);
    if (r.stdin) c.init.closeStdin();
    return {};
  }

  private async connect(r: Req) {
    const c = this.containers.get(r.id);
    return { shim_pid: process.pid, task_pid: c?.init.pid ?? 0, version: '' };
  }

  private async shutdown() {
    // A grouped shim serves other containers still: it only goes when the last one is gone.
    if (this.containers.size === 0 && this.creating.size === 0) this.requestShutdown();
    return {};
  }
}
