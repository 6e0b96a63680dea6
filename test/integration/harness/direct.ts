// The shim driven the way containerd drives it, without containerd: `start` with TTRPC_ADDRESS
// and the runtime options on stdin, the Task API over ttrpc, events received by a fake containerd
// Events service. Used by the tests that need the exact wire behaviour (status codes, event
// order) or a shim containerd would not give them (fuzzing, fault injection, soak).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Test } from 'tap';
import { messageType, serviceDef } from '../../../shim/framework/proto';
import { Code, TtrpcClient, TtrpcError, TtrpcServer, bindService, typedCall } from '../../../shim/framework/ttrpc';
import { repoRoot, withoutNodeOptions } from './containerd';
import { busyboxRootfs } from './fixtures';
import { mountsUnder, run as runAny, type RunOptions, type RunResult } from './proc';

export const DIRECT_NS = 'shimtest';
export const TASK = serviceDef('containerd.task.v2.Task');
export const EVENTS = serviceDef('containerd.services.events.ttrpc.v1.Events');
export const SHIM = path.join(repoRoot(), 'bin/containerd-shim-runcts-v2');
/** containerd.v1.types.Status. */
export const STATUS = { CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 };

/** run(), for the shim with the environment the test gives (tap's NODE_OPTIONS kept when present: see withoutNodeOptions). */
export function runShimBinary(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [f, a] = withoutNodeOptions(SHIM, args, opts.env as Record<string, string> | undefined);
  return runAny(f, a, opts);
}

export interface ReceivedEvent { topic: string; namespace: string; type: string; event: Record<string, any> } // eslint-disable-line @typescript-eslint/no-explicit-any

/** containerd's side of Events/Forward: records every event it is sent. */
export class FakeContainerdEvents {
  readonly events: ReceivedEvent[] = [];
  private server = new TtrpcServer();
  private listener: net.Server | undefined;
  constructor(readonly socket: string) {
    bindService(this.server, EVENTS, {
      Forward: async (req: { envelope: { topic: string; namespace: string; event: { type_url: string; value: Buffer } } }) => {
        const e = req.envelope;
        const type = messageType(e.event.type_url);
        this.events.push({
          topic: e.topic, namespace: e.namespace, type: e.event.type_url,
          event: type.toObject(type.decode(e.event.value), { longs: Number, defaults: true }),
        });
        return {};
      },
    });
  }
  async listen(): Promise<void> {
    this.listener = net.createServer();
    await new Promise<void>((resolve) => this.listener!.listen(this.socket, resolve));
    this.server.serve(this.listener);
  }
  close(): void {
    this.server.close();
    this.listener?.close();
  }
  for(id: string): ReceivedEvent[] {
    return this.events.filter((e) => e.event.container_id === id);
  }
  async waitFor(pred: () => boolean, ms = 10_000): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (pred()) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return pred();
  }
}

export interface DirectShim {
  address: string;
  client: TtrpcClient;
  pid: number;
  call(method: string, req: object, timeoutMs?: number): Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** A ttrpc client on a shim's address, its pid learnt from Connect. */
export async function connectShim(address: string, ns = DIRECT_NS): Promise<DirectShim> {
  const client = await TtrpcClient.connect(address.replace(/^unix:\/\//, ''));
  const call = (method: string, req: object, timeoutMs = 30_000) => typedCall(client, TASK, method, req, {
    timeoutMs, metadata: { 'containerd-namespace-ttrpc': ns },
  });
  const c = await call('Connect', { id: '' });
  return { address, client, pid: c.shim_pid, call };
}

/**
 * The end of a test's shim: SIGKILL every process of each container, wait for it, delete it, then
 * Shutdown (as containerd does after the last delete); true once the shim process is gone.
 */
export async function retireShim(shim: DirectShim, ids: string[]): Promise<boolean> {
  for (const id of ids) {
    await shim.call('Kill', { id, exec_id: '', signal: 9, all: true });
    await shim.call('Wait', { id, exec_id: '' });
    await shim.call('Delete', { id, exec_id: '' });
  }
  await shim.call('Shutdown', { id: ids[0] ?? '', now: false });
  return waitGone(shim.pid);
}

/** Assert that a call fails with a ttrpc status of the given code. */
export async function expectStatus(t: Test, p: Promise<unknown>, code: Code, what: string): Promise<TtrpcError | undefined> {
  try {
    await p;
    t.fail(`${what}: expected ${Code[code]}, call succeeded`);
    return undefined;
  } catch (err) {
    t.ok(err instanceof TtrpcError, `${what}: a ttrpc status`);
    t.equal((err as TtrpcError).code, code, `${what}: ${Code[code]} (${(err as Error).message})`);
    return err instanceof TtrpcError ? err : undefined;
  }
}

/** Fields of containerd.runc.v1.Options the tests set. */
export interface RuncOptionFields { binary_name?: string; root?: string; shim_cgroup?: string }

/** The runtime options containerd hands the shim (containerd.runc.v1.Options), encoded. */
export function runcOptions(o: RuncOptionFields): Buffer {
  const opts = messageType('containerd.runc.v1.Options');
  return Buffer.from(opts.encode(opts.fromObject(o)).finish());
}

/** `start`'s stdin: the runtime options as a google.protobuf.Any. */
export function optionsAny(o: RuncOptionFields): { type_url: string; value: Buffer } {
  return { type_url: 'containerd.runc.v1.Options', value: runcOptions(o) };
}

export function encodeAny(any: { type_url: string; value: Buffer }): Buffer {
  return Buffer.from(messageType('google.protobuf.Any').encode(any).finish());
}

/** ExecProcessRequest.spec: the OCI process as JSON in an Any, as containerd sends it. */
export function execSpec(args: string[]) {
  const proc = { terminal: false, user: { uid: 0, gid: 0 }, args, cwd: '/', env: ['PATH=/bin:/sbin:/usr/bin'] };
  return { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify(proc)) };
}

/** A field of /proc/<pid>/status. */
export function procStatus(pid: number, field: string): string | undefined {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return line?.slice(field.length + 1).trim();
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitGone(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && alive(pid)) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

export interface BundleOptions {
  annotations?: Record<string, string>;
  /** No pid namespace of its own. */
  hostPid?: boolean;
}

/**
 * One test file's shims: a private directory for bundles and sockets, the busybox rootfs, and
 * every address a start printed (none may outlive the file: see assertNothingLeft).
 */
export class DirectShims {
  readonly addresses = new Set<string>();
  private seq = 0;

  private constructor(readonly root: string, readonly rootfs: string) {}

  /** Made in t.before; t's teardown kills what is left of this file's shims and removes the directory. */
  static async create(t: Test): Promise<DirectShims> {
    const shims = new DirectShims(fs.mkdtempSync('/tmp/rs-'), await busyboxRootfs());
    t.teardown(async () => {
      if (process.env.KEEP_TMP) return;
      // Best effort: a failed test may leave a shim, its containers and their rootfs mounts; clean
      // what belongs to this run before the directory goes (rm would follow a bind mount of the
      // shared busybox rootfs into it).
      await runAny('pkill', ['-9', '-f', '--', `-address ${shims.root}/`]);
      await shims.deleteLeftoverContainers();
      for (const m of mountsUnder(shims.root).sort((a, b) => b.length - a.length)) await runAny('umount', ['-l', m]);
      fs.rmSync(shims.root, { recursive: true, force: true });
    });
    return shims;
  }

  /** `runc delete --force` every container of the default runc root whose bundle is in this directory. */
  async deleteLeftoverContainers(): Promise<void> {
    const root = path.join('/run/containerd/runc', DIRECT_NS);
    const listed = await runAny('runc', ['--root', root, 'list', '--format', 'json']);
    let rows: Array<{ id: string; bundle: string }> = [];
    try {
      rows = JSON.parse(listed.stdout || '[]') ?? [];
    } catch {
      return;
    }
    for (const r of rows) {
      if (r.bundle.startsWith(`${this.root}/`)) await runAny('runc', ['--root', root, 'delete', '--force', r.id]);
    }
  }

  /** The -address containerd would pass (nothing listens there: events go to TTRPC_ADDRESS). */
  get containerdAddress(): string {
    return path.join(this.root, 'containerd.sock');
  }

  /** A fake containerd events endpoint in this directory (not listening yet). */
  events(name: string): FakeContainerdEvents {
    return new FakeContainerdEvents(path.join(this.root, `ev-${name}.sock`));
  }

  /** A bundle with a busybox config.json running args, and a plain `log` file that keeps the shim's log. */
  bundle(id: string, args: string[], opts: BundleOptions = {}): string {
    const bundle = path.join(this.root, `b${++this.seq}`, id);
    fs.mkdirSync(bundle, { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(bundleSpec(id, args, opts)));
    // containerd makes this a fifo it reads; a plain file keeps the shim's log for a failing test to show.
    fs.writeFileSync(path.join(bundle, 'log'), '');
    return bundle;
  }

  /**
   * `start` as containerd runs it, in the bundle, events to eventsSocket. The shim runs the
   * compiled modules under tap's NODE_OPTIONS (a mutant in dist/ shows), unless `production`:
   * then as containerd starts it, without them, from the startup snapshot (for measurements:
   * tap's hooks run threads of their own).
   */
  async start(bundle: string, id: string, eventsSocket: string, stdin?: Buffer, env: Record<string, string> = {}, production = false): Promise<RunResult> {
    const base: NodeJS.ProcessEnv = { ...process.env };
    if (production) delete base.NODE_OPTIONS;
    const r = await runShimBinary(['-namespace', DIRECT_NS, '-address', this.containerdAddress, '-publish-binary', '/bin/true', '-id', id, 'start'], {
      cwd: bundle, env: { ...base, TTRPC_ADDRESS: eventsSocket, ...env }, input: stdin ?? Buffer.alloc(0), timeoutMs: 20_000,
    });
    if (r.stdout) this.addresses.add(r.stdout);
    return r;
  }

  /** start, asserting it printed an address, then connect. */
  async startAndConnect(t: Test, bundle: string, id: string, eventsSocket: string, stdin?: Buffer, production = false): Promise<DirectShim> {
    const r = await this.start(bundle, id, eventsSocket, stdin, {}, production);
    if (r.code !== 0 || !r.stdout.startsWith('unix://')) throw new Error(`start failed (${r.code}): ${r.stderr}`);
    const shim = await connectShim(r.stdout);
    t.teardown(() => shim.client.close());
    return shim;
  }

  /** The bundle's rootfs, bind mounted by the shim from the Create request's mounts (as snapshotters hand them). */
  bindRootfs() {
    return [{ type: 'bind', source: this.rootfs, target: '', options: ['rbind', 'rw'] }];
  }

  createReq(id: string, bundle: string, extra: object = {}) {
    return { id, bundle, rootfs: this.bindRootfs(), stdin: '', stdout: path.join(bundle, 'out.log'), stderr: path.join(bundle, 'out.log'), terminal: false, ...extra };
  }

  /** No shim process, socket or mount of this file is left. */
  async assertNothingLeft(t: Test, minAddresses = 1): Promise<void> {
    const shims = (await runAny('pgrep', ['-f', '--', `-address ${this.root}/`])).stdout.trim();
    t.equal(shims, '', 'no shim process left');
    t.ok(this.addresses.size >= minAddresses, `checked ${this.addresses.size} shim addresses`);
    for (const a of this.addresses) t.notOk(fs.existsSync(a.replace('unix://', '')), `socket gone: ${a}`);
    t.notOk(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(this.root), 'no mount under the test directory');
  }
}

function bundleSpec(id: string, args: string[], opts: BundleOptions) {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args, cwd: '/',
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      capabilities: {}, rlimits: [], noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      // As containerd's default spec: terminals need their own pts instance.
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    ],
    annotations: opts.annotations ?? {},
    linux: {
      namespaces: [...(opts.hostPid ? [] : [{ type: 'pid' }]), { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      maskedPaths: [], readonlyPaths: [],
    },
  };
}
