// A private containerd for one test: its own root, state, sockets and namespace, a PATH that
// resolves `containerd-shim-runcts-v2` to this checkout, and a `ctr` bound to it. It never
// touches a containerd the user already runs.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { busyboxImageTar, BUSYBOX_IMAGE } from './fixtures';
import { ContainerdDist, containerdDist, ContainerdVersion } from './versions';
import {
  DEFAULT_TIMEOUT_MS,
  describeResult,
  isAlive,
  listProcesses,
  mountsUnder,
  ProcInfo,
  readProcess,
  run,
  RunResult,
  sleep,
  unixSocketPathsOf,
  waitFor,
  withTimeout,
} from './proc';

export const RUNTIME_RUNC = 'io.containerd.runc.v2';
export const RUNTIME_RUNCTS = 'io.containerd.runcts.v2';
/** Every integration scenario runs against both: containerd's Go shim first, then ours. */
export const RUNTIMES: readonly string[] = [RUNTIME_RUNC, RUNTIME_RUNCTS];
export const SHIM_BINARIES: readonly string[] = ['containerd-shim-runc-v2', 'containerd-shim-runcts-v2'];
/** Where shims put their sockets, whatever containerd's state dir (1.6 to 2.3, the default). */
export const SHIM_SOCKET_DIR = '/run/containerd/s';
/** The runc state root the shims use by default (one sub-directory per namespace). */
export const RUNC_STATE_ROOT = '/run/containerd/runc';
export const CGROUP_ROOT = '/sys/fs/cgroup';
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ctr 2.x asks containerd for its deprecation warnings before every command and prints them on
// stderr (on this cgroup v1 machine: "The support for cgroup v1 is deprecated since containerd
// v2.2"); tests compare ctr's stderr. Every ctr the harness starts inherits this.
process.env.CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS ??= '1';

/**
 * The runtimes to test: RUNCTS_TEST_RUNTIMES="io.containerd.runc.v2,..." narrows the set
 * (handy while iterating on one of them); default both.
 */
export function runtimesUnderTest(): string[] {
  const env = process.env.RUNCTS_TEST_RUNTIMES;
  if (!env) return [...RUNTIMES];
  return env.split(',').map(s => s.trim()).filter(Boolean);
}

let repoRootCache: string | undefined;

/** The checkout this test file belongs to (works from test/... and from dist/test/...). */
export function repoRoot(): string {
  if (repoRootCache) return repoRootCache;
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    const pkg = path.join(d, 'package.json');
    if (fs.existsSync(pkg) && fs.existsSync(path.join(d, 'bin/containerd-shim-runcts-v2'))) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'runcts') return (repoRootCache = d);
      } catch {
        // keep looking
      }
    }
  }
  throw new Error(`cannot find the runcts checkout above ${__dirname}`);
}

/**
 * The shim socket the shims of containerd 1.6 to 2.3 derive for a container (or group):
 * sha256(address/ns/id); with debug, the Go shim's second socket sha256(address/ns/id/debug),
 * which the 2.x Go shim opens when containerd logs at debug level.
 */
export function shimSocketPath(containerdAddress: string, namespace: string, id: string, debug = false): string {
  const hex = crypto.createHash('sha256').update(path.join(containerdAddress, namespace, id, debug ? 'debug' : '')).digest('hex');
  return path.join(SHIM_SOCKET_DIR, hex);
}

export interface ContainerdOptions {
  /**
   * Which containerd (default '1.6', the system's): its containerd binary, its ctr for every
   * ctr() call, its Go shim for io.containerd.runc.v2 (its bin dir in containerd's PATH, after
   * the runcts one) and a config in the shape that version reads. See versions.ts.
   */
  version?: ContainerdVersion;
  /** Namespace for ctr (default: a fresh random one, so cgroups and runc state are ours alone). */
  namespace?: string;
  /** Default: ["io.containerd.grpc.v1.cri"]. */
  disabledPlugins?: string[];
  /**
   * TOML appended to the generated config.toml. A function gets this containerd's version
   * details (the CRI plugin's tables moved between versions).
   */
  extraConfig?: string | ((dist: ContainerdDist, dir: string) => string);
  /** containerd log level (default "debug": shims' logs then reach containerd's log too). */
  logLevel?: string;
  /** How long to wait for `ctr version` to answer (default 30 s). */
  startTimeoutMs?: number;
  /**
   * Extra environment for the containerd process; containerd passes its environment on to
   * every shim it starts (e.g. the shim's RUNCTS_TEST_DELAY_* hooks). PATH cannot be changed.
   */
  env?: Readonly<Record<string, string>>;
}

export interface CtrOptions {
  input?: string | Buffer;
  /** Default 60 s. */
  timeoutMs?: number;
  /** Override the instance's namespace. */
  namespace?: string;
}

const live = new Set<Containerd>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when a test process dies without stopping its containerd (tap timeout, crash).
  process.on('exit', () => {
    for (const cd of live) cd.stopSync();
  });
}

export class Containerd {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  /** containerd's grpc socket (ctr --address; the shims' -address). */
  readonly address: string;
  readonly ttrpcAddress: string;
  readonly namespace: string;
  readonly configPath: string;
  readonly logPath: string;
  /** The directory at the head of containerd's PATH, holding the runcts shim symlink. */
  readonly binDir: string;
  /** The containerd version in use: its binaries and config version. */
  readonly dist: ContainerdDist;
  private proc: ChildProcess | undefined;
  private exited = false;
  private exitPromise: Promise<void> | undefined;
  private stopped = false;
  private opts: ContainerdOptions | undefined;

  constructor(dir: string, namespace: string, dist: ContainerdDist) {
    this.dir = dir;
    this.dist = dist;
    this.root = path.join(dir, 'root');
    this.state = path.join(dir, 'state');
    this.address = path.join(dir, 'c.sock');
    this.ttrpcAddress = path.join(dir, 'c.sock.ttrpc');
    this.configPath = path.join(dir, 'config.toml');
    this.logPath = path.join(dir, 'containerd.log');
    this.binDir = path.join(dir, 'bin');
    this.namespace = namespace;
  }

  /** '1.6', '1.7', '2.2', '2.3'. */
  get version(): ContainerdVersion {
    return this.dist.version;
  }

  /** This version's ctr (absolute path). */
  get ctrPath(): string {
    return this.dist.ctr;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && !this.exited;
  }

  /** Run `ctr --address <sock> -n <ns> ...args` with a timeout. */
  ctr(args: readonly string[], opts: CtrOptions = {}): Promise<RunResult> {
    return run(this.dist.ctr, ['--address', this.address, '-n', opts.namespace ?? this.namespace, ...args], {
      input: opts.input,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
  }

  /** Like ctr(), but throws (with output) unless it exits 0. */
  async ctrOk(args: readonly string[], opts: CtrOptions = {}): Promise<RunResult> {
    const r = await this.ctr(args, opts);
    if (r.code !== 0) throw new Error(`ctr failed: ${describeResult(r)}`);
    return r;
  }

  /** Last n lines of containerd's log (shim logs included at debug level). */
  logTail(lines = 60): string {
    try {
      const all = fs.readFileSync(this.logPath, 'utf8').split('\n');
      return all.slice(-lines - 1).join('\n');
    } catch (e) {
      return `(no containerd log: ${(e as Error).message})`;
    }
  }

  /** Task bundle directories: state/io.containerd.runtime.v2.task/<ns>. */
  taskStateDir(ns = this.namespace): string {
    return path.join(this.state, 'io.containerd.runtime.v2.task', ns);
  }

  /** Task work directories: root/io.containerd.runtime.v2.task/<ns>. */
  taskRootDir(ns = this.namespace): string {
    return path.join(this.root, 'io.containerd.runtime.v2.task', ns);
  }

  /** The socket a shim of this containerd uses for container id (debug: the Go shim's debug socket). */
  shimSocketPath(id: string, ns = this.namespace, debug = false): string {
    return shimSocketPath(this.address, ns, id, debug);
  }

  /**
   * Live shim processes started by this containerd, either runtime: their argv carries
   * `-address <our grpc socket>` (containerd passes it to every shim it starts).
   */
  shims(): ProcInfo[] {
    return listProcesses().filter(p => p.state !== 'Z' && isShimOf(p.argv, this.address));
  }

  /** Import the busybox fixture as docker.io/library/busybox:latest and check it is listed. */
  async importBusybox(): Promise<void> {
    const tar = await busyboxImageTar();
    await this.ctrOk(['images', 'import', tar], { timeoutMs: 120_000 });
    const ls = await this.ctrOk(['images', 'ls', '-q']);
    if (!ls.stdout.split('\n').includes(BUSYBOX_IMAGE)) {
      throw new Error(`imported image not listed as ${BUSYBOX_IMAGE}: ${ls.stdout}`);
    }
  }

  /** @internal */
  async start(opts: ContainerdOptions): Promise<void> {
    fs.mkdirSync(this.root, { recursive: true, mode: 0o711 });
    fs.mkdirSync(this.state, { recursive: true, mode: 0o711 });
    fs.mkdirSync(this.binDir, { recursive: true });
    fs.symlinkSync(path.join(repoRoot(), 'bin/containerd-shim-runcts-v2'), path.join(this.binDir, 'containerd-shim-runcts-v2'));
    const disabled = opts.disabledPlugins ?? ['io.containerd.grpc.v1.cri'];
    const extra = typeof opts.extraConfig === 'function' ? opts.extraConfig(this.dist, this.dir) : (opts.extraConfig ?? '');
    const config = [
      containerdConfig(this.dist, {
        root: this.root,
        state: this.state,
        grpcAddress: this.address,
        ttrpcAddress: this.ttrpcAddress,
        disabledPlugins: disabled,
        logLevel: opts.logLevel ?? 'debug',
        optDir: path.join(this.dir, 'opt'),
      }),
      extra,
      '',
    ].join('\n');
    fs.writeFileSync(this.configPath, config);
    this.opts = opts;
    await this.launch();
  }

  /**
   * Stop only the containerd process (SIGTERM, or `signal`), leaving its shims and tasks running,
   * as a containerd restart or crash does. restart() brings it back on the same root and state.
   */
  async stopDaemon(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    this.proc!.kill(signal);
    if (!(await withTimeout(this.exitPromise!.then(() => true), 15_000))) {
      this.proc!.kill('SIGKILL');
      await withTimeout(this.exitPromise!, 5_000);
    }
  }

  /** Start containerd again after stopDaemon() with the same config; it reconnects to its shims. */
  async restart(): Promise<void> {
    if (this.running) throw new Error('containerd is still running: stopDaemon() first');
    if (this.stopped || !this.opts) throw new Error('this containerd was stopped for good');
    // containerd removes and recreates its sockets itself; a stale one only delays the readiness probe.
    fs.rmSync(this.address, { force: true });
    await this.launch();
  }

  private async launch(): Promise<void> {
    const opts = this.opts!;
    this.exited = false;
    const logFd = fs.openSync(this.logPath, 'a');
    try {
      const [file, args] = withoutNodeOptions(this.dist.containerd, ['--config', this.configPath], opts.env);
      this.proc = spawn(file, args, {
        detached: true, // own process group: a ^C to the test runner does not hit it first
        stdio: ['ignore', logFd, logFd],
        // runcts first, then this version's Go shim (containerd-shim-runc-v2), then the system.
        env: { ...process.env, ...opts.env, PATH: `${this.binDir}:${this.dist.binDir}:${SYSTEM_PATH}` },
      });
    } finally {
      fs.closeSync(logFd);
    }
    live.add(this);
    installExitHook();
    this.exitPromise = new Promise<void>(resolve => {
      this.proc!.once('exit', () => {
        this.exited = true;
        resolve();
      });
      this.proc!.once('error', () => {
        this.exited = true;
        resolve();
      });
    });

    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    let last: RunResult | undefined;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`containerd exited during startup; log tail:\n${this.logTail()}`);
      if (fs.existsSync(this.address)) {
        last = await run(this.dist.ctr, ['--address', this.address, 'version'], { timeoutMs: 5_000 });
        if (last.code === 0) return;
      }
      await sleep(50);
    }
    throw new Error(`containerd did not become ready: ${last ? describeResult(last) : 'no socket'}\nlog tail:\n${this.logTail()}`);
  }

  /**
   * Stop everything this containerd left behind, then remove its directories:
   * tasks and containers (through ctr, best effort), containerd itself (SIGTERM, then SIGKILL),
   * shims still running with our -address, container processes in our namespace's cgroups,
   * runc state of our namespace, mounts under our dirs, our cgroups, sockets of our shims.
   * Returns notes on what had to be cleaned up forcibly (empty when nothing was left).
   */
  async stop(): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    const notes: string[] = [];
    const ids = new Set<string>();
    if (this.running) {
      // In parallel: a hung shim costs each call its timeout, not the sum over all tasks.
      const tasks = await this.ctr(['task', 'ls', '-q'], { timeoutMs: 10_000 });
      const taskIds = tasks.code === 0 ? tasks.stdout.split('\n').filter(Boolean) : [];
      await Promise.all(
        taskIds.map(async id => {
          ids.add(id);
          notes.push(`task ${id} still present at stop`);
          await this.ctr(['task', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 });
          await this.ctr(['task', 'delete', '--force', id], { timeoutMs: 15_000 });
        }),
      );
      const containers = await this.ctr(['containers', 'ls', '-q'], { timeoutMs: 10_000 });
      const containerIds = containers.code === 0 ? containers.stdout.split('\n').filter(Boolean) : [];
      await Promise.all(
        containerIds.map(async id => {
          ids.add(id);
          notes.push(`container ${id} still present at stop`);
          await this.ctr(['containers', 'delete', id], { timeoutMs: 10_000 });
        }),
      );
    }
    const shimsBefore = this.shims();
    const shimSockets = new Set<string>(shimsBefore.flatMap(p => unixSocketPathsOf(p.pid)).filter(s => s.startsWith(SHIM_SOCKET_DIR + '/')));
    for (const id of ids) for (const debug of [false, true]) shimSockets.add(this.shimSocketPath(id, this.namespace, debug));

    if (this.running) {
      this.proc!.kill('SIGTERM');
      const done = await withTimeout(this.exitPromise!.then(() => true), 10_000);
      if (!done) {
        notes.push('containerd ignored SIGTERM for 10 s; killed');
        this.proc!.kill('SIGKILL');
        await withTimeout(this.exitPromise!, 5_000);
      }
    }
    live.delete(this);

    const leftover = this.shims();
    for (const p of leftover) {
      notes.push(`killed leftover shim pid ${p.pid}: ${p.argv.join(' ')}`);
      for (const s of unixSocketPathsOf(p.pid)) if (s.startsWith(SHIM_SOCKET_DIR + '/')) shimSockets.add(s);
      killPid(p.pid);
    }
    if (leftover.length) await waitFor(() => leftover.every(p => !isAlive(p.pid)), { timeoutMs: 5_000 });

    const inCgroup = processesInNamespaceCgroups(this.namespace);
    for (const pid of inCgroup) {
      notes.push(`killed leftover container process ${pid}`);
      killPid(pid);
    }
    if (inCgroup.length) await waitFor(() => inCgroup.every(p => !isAlive(p)), { timeoutMs: 5_000 });

    const runcRoot = path.join(RUNC_STATE_ROOT, this.namespace);
    for (const id of safeReaddir(runcRoot)) {
      notes.push(`runc state ${id} left in ${runcRoot}`);
      await run('runc', ['--root', runcRoot, 'delete', '--force', id], { timeoutMs: 10_000 });
    }
    rmdirQuiet(runcRoot);

    const mounts = mountsUnder(this.dir).sort((a, b) => b.length - a.length);
    for (const m of mounts) {
      notes.push(`unmounted ${m}`);
      await run('umount', ['-l', m], { timeoutMs: 10_000 });
    }

    removeNamespaceCgroups(this.namespace);
    for (const s of shimSockets) fs.rmSync(s, { force: true });
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
    return notes;
  }

  /** Synchronous last-resort cleanup for process exit (no ctr, no waiting). */
  stopSync(): void {
    if (this.stopped) return;
    this.stopped = true;
    live.delete(this);
    if (this.proc?.pid && !this.exited) killPid(this.proc.pid);
    for (const p of listProcesses()) if (p.state !== 'Z' && isShimOf(p.argv, this.address)) killPid(p.pid);
    for (const pid of processesInNamespaceCgroups(this.namespace)) killPid(pid);
    for (const m of mountsUnder(this.dir).sort((a, b) => b.length - a.length)) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore', timeout: 10_000 });
      } catch {
        // best effort
      }
    }
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

/**
 * A command line that runs `file` without tap's NODE_OPTIONS (its process-info hook, which tap
 * re-adds to every child's environment): containerd hands its environment to every shim, and shims
 * must run as in production, from the startup snapshot. `env` may set NODE_OPTIONS on purpose.
 */
export function withoutNodeOptions(file: string, args: readonly string[], env?: Readonly<Record<string, string>>): [string, string[]] {
  if (env?.NODE_OPTIONS !== undefined) return [file, [...args]];
  return ['env', ['-u', 'NODE_OPTIONS', file, ...args]];
}

/**
 * Live runcts daemons of cd, optionally of one namespace: not the short-lived `start` / `delete`
 * invocations, and not a child a shim is spawning (posix_spawn's child shows its parent's argv
 * until it execs runc or the daemon). A daemon leads a session of its own; the node process of a
 * `start` shows the daemon's argv (bin/ leaves the action out) but is in containerd's session
 * until it becomes the daemon, if it does.
 */
export function shimDaemons(cd: Containerd, ns?: string): ProcInfo[] {
  const shims = cd.shims();
  const shimPids = new Set(shims.map(p => p.pid));
  return shims.filter(p => {
    const last = p.argv[p.argv.length - 1];
    if (last === 'start' || last === 'delete' || shimPids.has(p.ppid) || p.sid !== p.pid) return false;
    if (ns === undefined) return true;
    const i = p.argv.indexOf('-namespace');
    return i >= 0 && p.argv[i + 1] === ns;
  });
}

/** TOML basic string. */
export function tomlString(s: string): string {
  return JSON.stringify(s);
}

/**
 * The top of config.toml for this version: config `version` 2 (1.x) with the [grpc] / [ttrpc]
 * tables, 3 (2.0-2.2: same tables), 4 (2.3: the listen addresses are the options of the
 * io.containerd.server.v1.grpc / .ttrpc plugins). Shim sockets stay in the default
 * /run/containerd/s (2.3's io.containerd.shim.v1.manager socket_dir is left unset).
 */
export function containerdConfig(
  dist: ContainerdDist,
  c: { root: string; state: string; grpcAddress: string; ttrpcAddress: string; disabledPlugins: readonly string[]; logLevel: string; optDir: string },
): string {
  const q = tomlString;
  const listen =
    dist.configVersion >= 4
      ? ['  [plugins."io.containerd.server.v1.grpc"]', `    address = ${q(c.grpcAddress)}`, '  [plugins."io.containerd.server.v1.ttrpc"]', `    address = ${q(c.ttrpcAddress)}`]
      : [];
  return [
    `version = ${dist.configVersion}`,
    `root = ${q(c.root)}`,
    `state = ${q(c.state)}`,
    `disabled_plugins = [${c.disabledPlugins.map(q).join(', ')}]`,
    '',
    ...(dist.configVersion < 4 ? ['[grpc]', `  address = ${q(c.grpcAddress)}`, '', '[ttrpc]', `  address = ${q(c.ttrpcAddress)}`, ''] : []),
    '[debug]',
    `  level = ${q(c.logLevel)}`,
    '',
    '[plugins]',
    ...listen,
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(c.optDir)}`,
    '  [plugins."io.containerd.snapshotter.v1.overlayfs"]',
    `    root_path = ${q(path.join(c.root, 'io.containerd.snapshotter.v1.overlayfs'))}`,
    '',
  ].join('\n');
}

function isShimOf(argv: readonly string[], address: string): boolean {
  for (let i = 0; i + 1 < argv.length; i++) if (argv[i] === '-address' && argv[i + 1] === address) return true;
  return false;
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function rmdirQuiet(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty or gone
  }
}

/** cgroup v1 controller hierarchies (and the v2 / unified mount), skipping co-mount symlinks. */
export function cgroupHierarchies(): string[] {
  const out: string[] = [];
  if (fs.existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) return [CGROUP_ROOT];
  for (const e of safeReaddir(CGROUP_ROOT)) {
    const p = path.join(CGROUP_ROOT, e);
    try {
      if (fs.lstatSync(p).isDirectory()) out.push(p);
    } catch {
      // raced
    }
  }
  return out;
}

/** Container cgroups left under /<namespace>/ (ctr's default cgroupsPath is /<ns>/<id>). */
export function namespaceCgroups(namespace: string): string[] {
  const out: string[] = [];
  for (const h of cgroupHierarchies()) {
    for (const e of safeReaddir(path.join(h, namespace))) {
      const p = path.join(h, namespace, e);
      try {
        if (fs.lstatSync(p).isDirectory()) out.push(p);
      } catch {
        // raced
      }
    }
  }
  return out;
}

/** Pids whose cgroup (any hierarchy) lies under /<namespace>/. */
export function processesInNamespaceCgroups(namespace: string): number[] {
  const pids: number[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cg = fs.readFileSync(`/proc/${name}/cgroup`, 'utf8');
      if (cg.split('\n').some(l => l.split(':').slice(2).join(':').startsWith(`/${namespace}/`))) {
        const p = readProcess(Number(name));
        if (p && p.state !== 'Z') pids.push(p.pid);
      }
    } catch {
      // gone
    }
  }
  return pids;
}

function removeCgroupTree(dir: string): void {
  for (const e of safeReaddir(dir)) {
    const p = path.join(dir, e);
    try {
      if (fs.lstatSync(p).isDirectory()) removeCgroupTree(p);
    } catch {
      // raced
    }
  }
  rmdirQuiet(dir);
}

function removeNamespaceCgroups(namespace: string): void {
  for (const h of cgroupHierarchies()) {
    const d = path.join(h, namespace);
    if (fs.existsSync(d)) removeCgroupTree(d);
  }
}

function randomNamespace(): string {
  return `rcts-${crypto.randomBytes(4).toString('hex')}`;
}

/** Start a private containerd and wait until `ctr version` answers. */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  // Short paths: unix socket paths are limited to 108 bytes.
  const dist = await containerdDist(opts.version);
  const dir = fs.mkdtempSync('/tmp/rc-');
  const cd = new Containerd(dir, opts.namespace ?? randomNamespace(), dist);
  try {
    await cd.start(opts);
  } catch (e) {
    const tail = cd.logTail();
    await cd.stop();
    throw new Error(`${(e as Error).message}\n(containerd log tail)\n${tail}`);
  }
  return cd;
}
