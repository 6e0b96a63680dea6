// One container: its bundle, rootfs, runc handle and init process.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../framework/logger';
import type { Reaper } from '../framework/reaper';
import { hasOwnPidNamespace, writeBundleState, type RuncOptions } from './bundle';
import { toTimestamp } from '../framework/publisher';
import { alreadyExists, createFailure, failedPrecondition, invalidArgument, notFound, runtimeError, unimplemented } from './errors';
import { criuStatus } from './criu';
import { createIO, type IOContext, type PipeOwner, type ProcessIO, type StdioPaths } from './io';
import { mountAll, unmountAll, type MountSpec } from './mount';
import { ExitOrdering } from './ordering';
import { ExecProcess, execProcessSpec } from './process/exec';
import { InitProcess } from './process/init';
import type { LifecycleSink, ShimProcess } from './process/lifecycle';
import type { ExitInfo } from './process/state';
import { decodeOptions } from './options';
import { Runc, readPidFile, removePidFile, type RuncApi } from './runc';
import { cgroupOfPid, type Cgroup } from './cgroups';

export interface CreateRequest {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  checkpoint: string;
  options?: { type_url: string; value: Buffer } | null;
}

export interface ContainerDeps {
  namespace: string;
  reaper: Reaper;
  log: Logger;
  debug: boolean;
  /** Queue a lifecycle event (topic, containerd.events type name, event). */
  publish(topic: string, type: string, event: object): void;
}

export interface ExecRequest {
  id: string;
  exec_id: string;
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  spec?: { type_url: string; value: Buffer } | null;
}

/** The SyntaxError of a config.json that is not JSON; undefined when it parses (or cannot be read). */
function specSyntaxError(bundle: string): SyntaxError | undefined {
  try {
    JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) return err;
  }
  return undefined;
}

function ioContext(id: string, deps: ContainerDeps, owner: PipeOwner | undefined): IOContext {
  return { id, namespace: deps.namespace, reaper: deps.reaper, log: deps.log, owner };
}

/** IoUid/IoGid: set only when either is (0/0 is who owns the pipes anyway). */
function pipeOwner(opts: RuncOptions): PipeOwner | undefined {
  return opts.io_uid || opts.io_gid ? { uid: opts.io_uid ?? 0, gid: opts.io_gid ?? 0 } : undefined;
}

export class Container {
  readonly execs = new Map<string, ExecProcess>();
  private readonly execIdsReserved = new Set<string>();
  readonly ordering: ExitOrdering;
  /** Set once the init exists (right after runc create). */
  private initProcess: InitProcess | undefined;
  /** The init's cgroup, found from its pid once it exists; absent when that failed (Stats then says so). */
  private cgroup: Cgroup | undefined;
  private oomWatch: { close(): void } | undefined;

  private constructor(
    readonly id: string,
    readonly bundle: string,
    readonly rootfs: string,
    private readonly runc: RuncApi,
    private readonly deps: ContainerDeps,
    private readonly pipeOwner?: PipeOwner,
  ) {
    this.ordering = new ExitOrdering(undefined, (pending) =>
      deps.log.error({ id, pending }, 'init exit held too long for exec exits; publishing it anyway'));
  }

  get init(): InitProcess {
    if (!this.initProcess) throw notFound(`container ${this.id} has no init process`);
    return this.initProcess;
  }

  /** For the diagnostic dump: the processes and their states, and what the exit ordering holds. */
  describe(): object {
    const proc = (p: { pid: number; state: { kind: string } }) => ({ pid: p.pid, state: p.state.kind });
    return {
      id: this.id,
      bundle: this.bundle,
      init: this.initProcess ? proc(this.initProcess) : undefined,
      execs: [...this.execs].map(([execId, p]) => ({ execId, ...proc(p) })),
      pendingExecs: this.ordering.pending,
      initExitHeld: this.ordering.holdingInit,
    };
  }

  /** Lifecycle events of every process of this container go through the ordering here. */
  private readonly sink: LifecycleSink = {
    started: (p) => {
      if (p instanceof ExecProcess) {
        this.ordering.execStarted(p.execId);
        this.deps.publish('/tasks/exec-started', 'TaskExecStarted', { container_id: this.id, exec_id: p.execId, pid: p.pid });
      } else {
        this.watchOom();
        this.deps.publish('/tasks/start', 'TaskStart', { container_id: this.id, pid: p.pid });
      }
    },
    exited: (p, exit, report) => {
      const publish = () => {
        this.publishExit(p, exit);
        report();
      };
      if (p instanceof ExecProcess) this.ordering.execExited(p.execId, publish);
      else this.ordering.initExited(publish);
    },
  };

  /** Find the init's cgroup (once); a failure is logged and retried by the next caller. */
  private loadCgroup(): Cgroup | undefined {
    if (!this.cgroup && this.initProcess && this.initProcess.pid > 0) {
      try {
        this.cgroup = cgroupOfPid(this.initProcess.pid);
      } catch (err) {
        this.deps.log.warn({ err, id: this.id }, 'cannot find the container\'s cgroup');
      }
    }
    return this.cgroup;
  }

  /** /tasks/oom for every OOM kill in the container's cgroup, from its start until its delete. */
  private watchOom(): void {
    const cg = this.loadCgroup();
    if (!cg || this.oomWatch) return;
    try {
      this.oomWatch = cg.watchOom(() => this.deps.publish('/tasks/oom', 'TaskOOM', { container_id: this.id }));
    } catch (err) {
      this.deps.log.warn({ err, id: this.id }, 'cannot watch the container\'s cgroup for OOM kills');
    }
  }

  /**
   * The container's processes for Pids: its cgroup (what runc ps reads) without running runc — a
   * liveness probe's Pids must not cost a process — together with every process the shim itself
   * knows to be alive: the init until its exit, and every exec from its Start's answer until its
   * exit. The cgroup alone cannot promise the second part: the exec's place in it is written by
   * the runtime, a producer of its own (runc joins it before writing the pid file, a wrapper or
   * another runtime need not), and without the cgroup (not found) it would show the init only. A
   * pid counted here cannot belong to another process yet: its exit has not been reaped.
   */
  pids(): number[] {
    const known = this.livePids();
    const cg = this.loadCgroup();
    if (!cg) return known;
    let inCgroup: number[];
    try {
      inCgroup = cg.processes();
    } catch (err) {
      throw runtimeError(err, 'failed to read the container\'s processes');
    }
    return [...new Set([...inCgroup, ...known])].sort((a, b) => a - b);
  }

  /** The init (until it stopped) and the running execs: pids whose exits have not come yet. */
  private livePids(): number[] {
    const live = (p: ShimProcess) => p.pid > 0 && p.state.kind !== 'stopped' && p.state.kind !== 'deleted';
    const init = this.initProcess;
    const pids = init && live(init) ? [init.pid] : [];
    for (const p of this.execs.values()) if (p.state.kind === 'running' && p.pid > 0) pids.push(p.pid);
    return pids;
  }

  /** The cgroup metrics containerd expects from Stats. */
  stats(): { typeUrl: string; metrics: object } {
    const cg = this.loadCgroup();
    if (!cg) throw notFound('cgroup does not exist');
    try {
      return cg.stats();
    } catch (err) {
      throw runtimeError(err, 'failed to read cgroup stats');
    }
  }

  private publishExit(p: ShimProcess, exit: ExitInfo): void {
    this.deps.publish('/tasks/exit', 'TaskExit', {
      container_id: this.id, id: p.id, pid: p.pid, exit_status: exit.status, exited_at: toTimestamp(exit.exitedAt),
    });
  }

  static async create(r: CreateRequest, deps: ContainerDeps): Promise<Container> {
    if (r.checkpoint) {
      const criu = await criuStatus(deps.reaper);
      if (!criu.usable) throw failedPrecondition(`restore from a checkpoint needs criu, which does not work on this machine: ${criu.reason}`);
      throw unimplemented('restore from a checkpoint is not supported by runcts yet');
    }
    if (!path.isAbsolute(r.bundle) || !fs.existsSync(path.join(r.bundle, 'config.json'))) {
      throw invalidArgument(`bundle ${r.bundle} has no config.json`);
    }
    const opts = decodeOptions(r.options);
    const runc = new Runc({
      binary: opts.binary_name || 'runc',
      root: Runc.rootFor(opts.root, deps.namespace),
      bundle: r.bundle,
      reaper: deps.reaper,
      debug: deps.debug,
      systemdCgroup: opts.systemd_cgroup,
      criuPath: opts.criu_path,
    });

    const rootfs = r.rootfs.length > 0 ? path.join(r.bundle, 'rootfs') : '';
    const stdio: StdioPaths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    let io: ProcessIO | undefined;
    try {
      if (rootfs) {
        // Not recursive (the bundle is there: config.json is): Node's recursive mkdir reports ENOENT for EROFS.
        try {
          fs.mkdirSync(rootfs, { mode: 0o711 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        try {
          mountAll(r.rootfs, rootfs);
        } catch (err) {
          throw runtimeError(err, 'failed to mount rootfs component');
        }
      }
      io = await createIO(stdio, ioContext(r.id, deps, pipeOwner(opts)));
      const pidFile = path.join(r.bundle, 'init.pid');
      // Exits collected from here on may be the init's (it is reparented to us when runc create exits).
      const exitsFrom = deps.reaper.mark();
      const created = runc.create(r.id, {
        bundle: r.bundle, pidFile, stdio: io.childFds, consoleSocket: io.consoleSocket,
        noPivot: opts.no_pivot_root, noNewKeyring: opts.no_new_keyring,
      });
      // While runc works (the create is settled below either way, before any cleanup).
      let stateError: unknown;
      try {
        writeBundleState(r.bundle, opts);
      } catch (err) {
        stateError = err;
      }
      const killAllOnExit = !hasOwnPidNamespace(r.bundle);
      try {
        await created;
      } catch (err) {
        // Looked into only on failure: the success path reads nothing more.
        throw createFailure(err, r.bundle, { specError: specSyntaxError(r.bundle), stateError });
      }
      if (stateError) throw stateError;
      await io.afterLaunch();
      // Read the pid only after runc create returned: the pid file is written by rename (complete), but its
      // exit may already have been reaped; InitProcess claims it from the reaper either way.
      const pid = readPidFile(pidFile);
      const c = new Container(r.id, r.bundle, rootfs, runc, deps, pipeOwner(opts));
      c.initProcess = new InitProcess(
        r.id, pid, r.bundle, stdio, io, runc, killAllOnExit, c.sink, deps.log, deps.reaper.wait(pid, exitsFrom),
      );
      c.loadCgroup();
      return c;
    } catch (err) {
      io?.close();
      await runc.delete(r.id, { force: true }).catch(() => undefined);
      removePidFile(path.join(r.bundle, 'init.pid'));
      if (rootfs) {
        try {
          unmountAll(rootfs);
        } catch (e) {
          deps.log.warn({ err: e }, 'failed to clean up rootfs after failed create');
        }
      }
      throw err;
    }
  }

  /** The init for an empty exec id, else that exec. */
  process(execId: string): InitProcess | ExecProcess {
    if (!execId) return this.init;
    const p = this.execs.get(execId);
    if (!p) throw notFound(`process ${execId} not found in container ${this.id}`);
    return p;
  }

  /** Register an exec (not started yet). */
  async addExec(r: ExecRequest): Promise<ExecProcess> {
    if (!r.exec_id) throw invalidArgument('exec id must not be empty');
    if (this.execs.has(r.exec_id) || this.execIdsReserved.has(r.exec_id)) throw alreadyExists(`id ${r.exec_id}`);
    this.init.allow('exec');
    if (!r.spec?.value?.length) throw invalidArgument('exec needs a process spec');
    const spec = execProcessSpec(r.spec.value, r.terminal);
    const stdio: StdioPaths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    // Reserve the id across the await: a second Exec with it is AlreadyExists, not a second process.
    this.execIdsReserved.add(r.exec_id);
    let io: ProcessIO;
    try {
      io = await createIO(stdio, ioContext(this.id, this.deps, this.pipeOwner));
    } finally {
      this.execIdsReserved.delete(r.exec_id);
    }
    const p = new ExecProcess(r.exec_id, this.id, this.bundle, spec, stdio, io, this.runc, this.deps.reaper, this.sink, this.deps.log);
    this.execs.set(r.exec_id, p);
    return p;
  }

  async startExec(p: ExecProcess): Promise<void> {
    // A stopped (or stopping) container takes no new process; checked again by runc itself.
    this.init.allow('exec');
    p.allow('start');
    this.ordering.execStarting();
    try {
      await p.start();
    } catch (err) {
      this.ordering.execStartFailed();
      throw err;
    }
  }

  async deleteExec(p: ExecProcess): Promise<ExitInfo> {
    const exit = await p.delete();
    this.execs.delete(p.execId);
    return exit;
  }

  /**
   * Delete the init (and with it the container), then release the rootfs. `cleanedUp`: nothing of
   * the container is left for containerd's `delete` to clean up.
   */
  async delete(): Promise<{ exit: ExitInfo; cleanedUp: boolean }> {
    const exit = await this.init.delete();
    this.oomWatch?.close();
    this.oomWatch = undefined;
    for (const p of this.execs.values()) {
      if (p.state.kind !== 'deleted') await p.delete().catch(() => undefined);
    }
    this.execs.clear();
    let cleanedUp = true;
    if (this.rootfs) {
      try {
        unmountAll(this.rootfs);
      } catch (err) {
        cleanedUp = false;
        this.deps.log.warn({ err, rootfs: this.rootfs }, 'failed to unmount rootfs');
      }
    }
    return { exit, cleanedUp };
  }

  /** pid -> exec id, for Pids. */
  execIdOf(pid: number): string | undefined {
    for (const p of this.execs.values()) if (p.pid === pid && p.state.kind === 'running') return p.execId;
    return undefined;
  }
}
