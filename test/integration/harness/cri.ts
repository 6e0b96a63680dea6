// CRI harness: a private containerd with its CRI plugin (namespace k8s.io), two runtime handlers
// (`runc` → containerd's Go shim, `runcts` → ours), a locally built pause image, a private CNI
// bridge network, and a promise-based CRI client over @grpc/grpc-js. Tests drive it the way the
// kubelet does: RunPodSandbox, CreateContainer/StartContainer, ExecSync, Exec/Attach over the
// streaming server's websocket protocol, ContainerStats, UpdateContainerResources, ...
//
// See docs/cri-tests.md.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { cgroupHierarchies, Containerd, repoRoot, RUNC_STATE_ROOT, RUNTIME_RUNC, RUNTIME_RUNCTS, runtimesUnderTest, startContainerd, tomlString } from './containerd';
import { BUSYBOX_IMAGE, busyboxImageTar, fixturesDir } from './fixtures';
import { findLeaks, leakSnapshot, LeakSnapshot } from './leaks';
import { ContainerdDist, ContainerdVersion } from './versions';
import { isAlive, listProcesses, readProcess, run, runOk, sleep, waitFor, withTimeout } from './proc';

/** containerd's CRI plugin works in this namespace, always. */
export const CRI_NAMESPACE = 'k8s.io';
/** The pause image the CRI config names as sandbox_image (built locally, imported with ctr). */
export const PAUSE_IMAGE = 'localhost/runcts-test/pause:1';
export const CNI_BIN_DIR = '/usr/lib/cni';

export interface CriHandler {
  /** The CRI runtime handler name (RunPodSandboxRequest.runtime_handler). */
  name: string;
  /** Its runtime_type in the CRI config. */
  runtimeType: string;
  /** The shim binary containerd derives from the runtime type. */
  shimBinary: string;
}

export const CRI_HANDLERS: readonly CriHandler[] = [
  { name: 'runc', runtimeType: RUNTIME_RUNC, shimBinary: 'containerd-shim-runc-v2' },
  { name: 'runcts', runtimeType: RUNTIME_RUNCTS, shimBinary: 'containerd-shim-runcts-v2' },
];

/** Handlers to test, in order (Go shim first): RUNCTS_TEST_RUNTIMES narrows them by runtime type. */
export function criHandlersUnderTest(): CriHandler[] {
  const types = runtimesUnderTest();
  return CRI_HANDLERS.filter(h => types.includes(h.runtimeType));
}

/** True when argv is the shim process of this handler (the runcts one is `node .../dist/shim/main.js`). */
export function isShimOfHandler(h: CriHandler, argv: readonly string[]): boolean {
  if (h.name === 'runc') return path.basename(argv[0] ?? '') === 'containerd-shim-runc-v2';
  return argv.some(a => /containerd-shim-runcts-v2$|dist\/shim\/main\.js$/.test(a));
}

// ---------------------------------------------------------------------------------------------
// Message shapes (as decoded by proto-loader with keepCase, enums as strings, longs as numbers,
// defaults filled in). Only the fields the tests use.

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  target_id?: string;
}

export interface LinuxContainerResources {
  cpu_period?: number;
  cpu_quota?: number;
  cpu_shares?: number;
  memory_limit_in_bytes?: number;
  oom_score_adj?: number;
  cpuset_cpus?: string;
  cpuset_mems?: string;
  memory_swap_limit_in_bytes?: number;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: {
    cgroup_parent?: string;
    security_context?: { namespace_options?: NamespaceOption; privileged?: boolean };
    sysctls?: Record<string, string>;
  };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: Array<{ key: string; value: string }>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  log_path?: string;
  stdin?: boolean;
  stdin_once?: boolean;
  tty?: boolean;
  linux?: {
    resources?: LinuxContainerResources;
    security_context?: { namespace_options?: NamespaceOption; privileged?: boolean };
  };
}

export interface PodSandboxStatus {
  id: string;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  state: PodSandboxState;
  created_at: number;
  network: { ip: string; additional_ips: Array<{ ip: string }> } | null;
  linux: { namespaces: { options: NamespaceOption | null } | null } | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtime_handler: string;
}

export interface PodSandboxStatusResponse {
  status: PodSandboxStatus;
  info: Record<string, string>;
}

export interface PodSandbox {
  id: string;
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  state: PodSandboxState;
  created_at: number;
  runtime_handler: string;
}

export interface Container {
  id: string;
  pod_sandbox_id: string;
  metadata: { name: string; attempt: number };
  image: { image: string };
  image_ref: string;
  state: ContainerState;
  created_at: number;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number };
  state: ContainerState;
  created_at: number;
  started_at: number;
  finished_at: number;
  exit_code: number;
  image: { image: string } | null;
  image_ref: string;
  reason: string;
  message: string;
  log_path: string;
}

export interface ContainerStatusResponse {
  status: ContainerStatus;
  info: Record<string, string>;
}

export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exit_code: number;
}

export interface UInt64Value {
  value: number;
}

export interface ContainerStats {
  attributes: { id: string; metadata: { name: string; attempt: number } | null } | null;
  cpu: { timestamp: number; usage_core_nano_seconds: UInt64Value | null; usage_nano_cores: UInt64Value | null } | null;
  memory: {
    timestamp: number;
    working_set_bytes: UInt64Value | null;
    available_bytes: UInt64Value | null;
    usage_bytes: UInt64Value | null;
    rss_bytes: UInt64Value | null;
    page_faults: UInt64Value | null;
    major_page_faults: UInt64Value | null;
  } | null;
  writable_layer: { timestamp: number; used_bytes: UInt64Value | null; inodes_used: UInt64Value | null } | null;
}

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// The client.

/** A CRI call failed: grpc status code and details. */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: number,
    readonly details: string,
  ) {
    super(`CRI ${method} failed: ${grpc.status[code] ?? code}: ${details}`);
  }
}

type GrpcClient = grpc.Client & Record<string, (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;

let packageCache: grpc.GrpcObject | undefined;

/** test/proto/cri/api.proto, loaded once per process. */
function criPackage(): grpc.GrpcObject {
  if (!packageCache) {
    const def = protoLoader.loadSync(path.join(repoRoot(), 'test/proto/cri/api.proto'), {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      arrays: true,
      objects: true,
    });
    packageCache = grpc.loadPackageDefinition(def);
  }
  return packageCache;
}

export const DEFAULT_CRI_TIMEOUT_MS = 60_000;

/** Promise-returning CRI client (RuntimeService and ImageService) on containerd's grpc socket. */
export class CriClient {
  private readonly runtime: GrpcClient;
  private readonly images: GrpcClient;

  constructor(readonly address: string) {
    const v1 = (criPackage().runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
    const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
    const Images = v1.ImageService as grpc.ServiceClientConstructor;
    const opts: grpc.ClientOptions = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
    this.runtime = new Runtime(`unix://${address}`, grpc.credentials.createInsecure(), opts) as GrpcClient;
    this.images = new Images(`unix://${address}`, grpc.credentials.createInsecure(), opts) as GrpcClient;
  }

  close(): void {
    this.runtime.close();
    this.images.close();
  }

  /** One unary call with a deadline (a hung runtime fails the test instead of hanging it). */
  call<T>(method: string, req: object, timeoutMs = DEFAULT_CRI_TIMEOUT_MS, client: GrpcClient = this.runtime): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fn = client[method];
      if (typeof fn !== 'function') {
        reject(new Error(`no CRI method ${method}`));
        return;
      }
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details));
        else resolve(res as T);
      });
    });
  }

  version(): Promise<{ version: string; runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call('Version', { version: 'v1' });
  }

  status(verbose = false): Promise<{ status: { conditions: RuntimeCondition[] }; info: Record<string, string> }> {
    return this.call('Status', { verbose });
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler: string, timeoutMs?: number): Promise<string> {
    const r = await this.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: runtimeHandler }, timeoutMs);
    return r.pod_sandbox_id;
  }

  async stopPodSandbox(id: string, timeoutMs?: number): Promise<void> {
    await this.call('StopPodSandbox', { pod_sandbox_id: id }, timeoutMs);
  }

  async removePodSandbox(id: string, timeoutMs?: number): Promise<void> {
    await this.call('RemovePodSandbox', { pod_sandbox_id: id }, timeoutMs);
  }

  podSandboxStatus(id: string, verbose = false): Promise<PodSandboxStatusResponse> {
    return this.call('PodSandboxStatus', { pod_sandbox_id: id, verbose });
  }

  async listPodSandbox(filter: { id?: string; state?: { state: PodSandboxState }; label_selector?: Record<string, string> } = {}): Promise<PodSandbox[]> {
    return (await this.call<{ items: PodSandbox[] }>('ListPodSandbox', { filter })).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, timeoutMs?: number): Promise<string> {
    const r = await this.call<{ container_id: string }>('CreateContainer', { pod_sandbox_id: podSandboxId, config, sandbox_config: sandboxConfig }, timeoutMs);
    return r.container_id;
  }

  async startContainer(id: string, timeoutMs?: number): Promise<void> {
    await this.call('StartContainer', { container_id: id }, timeoutMs);
  }

  /** timeoutSec: the grace period (CRI StopContainerRequest.timeout); the call's own deadline is longer. */
  async stopContainer(id: string, timeoutSec: number, callTimeoutMs?: number): Promise<void> {
    await this.call('StopContainer', { container_id: id, timeout: timeoutSec }, callTimeoutMs ?? timeoutSec * 1000 + DEFAULT_CRI_TIMEOUT_MS);
  }

  async removeContainer(id: string, timeoutMs?: number): Promise<void> {
    await this.call('RemoveContainer', { container_id: id }, timeoutMs);
  }

  async listContainers(filter: { id?: string; state?: { state: ContainerState }; pod_sandbox_id?: string; label_selector?: Record<string, string> } = {}): Promise<Container[]> {
    return (await this.call<{ containers: Container[] }>('ListContainers', { filter })).containers;
  }

  containerStatus(id: string, verbose = false): Promise<ContainerStatusResponse> {
    return this.call('ContainerStatus', { container_id: id, verbose });
  }

  async updateContainerResources(id: string, linux: LinuxContainerResources): Promise<void> {
    await this.call('UpdateContainerResources', { container_id: id, linux });
  }

  /** timeoutSec: ExecSyncRequest.timeout (0: none); the call's own deadline is longer. */
  execSync(id: string, cmd: string[], timeoutSec = 0, callTimeoutMs?: number): Promise<ExecSyncResponse> {
    return this.call('ExecSync', { container_id: id, cmd, timeout: timeoutSec }, callTimeoutMs ?? timeoutSec * 1000 + DEFAULT_CRI_TIMEOUT_MS);
  }

  async exec(req: { container_id: string; cmd: string[]; tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string> {
    return (await this.call<{ url: string }>('Exec', req)).url;
  }

  async attach(req: { container_id: string; stdin?: boolean; tty?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string> {
    return (await this.call<{ url: string }>('Attach', req)).url;
  }

  async containerStats(id: string): Promise<ContainerStats> {
    return (await this.call<{ stats: ContainerStats }>('ContainerStats', { container_id: id })).stats;
  }

  async listContainerStats(filter: { id?: string; pod_sandbox_id?: string; label_selector?: Record<string, string> } = {}): Promise<ContainerStats[]> {
    return (await this.call<{ stats: ContainerStats[] }>('ListContainerStats', { filter })).stats;
  }

  async imageStatus(image: string): Promise<{ id: string; repo_tags: string[]; size: number } | null> {
    return (await this.call<{ image: { id: string; repo_tags: string[]; size: number } | null }>('ImageStatus', { image: { image } }, undefined, this.images)).image;
  }

  async listImages(): Promise<Array<{ id: string; repo_tags: string[] }>> {
    return (await this.call<{ images: Array<{ id: string; repo_tags: string[] }> }>('ListImages', { filter: {} }, undefined, this.images)).images;
  }
}

// ---------------------------------------------------------------------------------------------
// The pause image: the busybox fixture's layer under a config whose entrypoint waits forever and
// exits 0 on SIGTERM/SIGINT (as pid 1 it would otherwise ignore them).

export const PAUSE_ENTRYPOINT = ['/bin/sh', '-c', "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"];

let pausePromise: Promise<string> | undefined;

/** OCI layout tar of the pause image, named PAUSE_IMAGE for `ctr images import`. */
export function pauseImageTar(): Promise<string> {
  pausePromise ??= (async () => {
    const busybox = await busyboxImageTar();
    const work = fs.mkdtempSync(path.join(fixturesDir(), 'pause-'));
    const layout = path.join(work, 'layout');
    fs.mkdirSync(layout);
    await runOk('tar', ['-C', layout, '-xf', busybox], { timeoutMs: 60_000 });
    const blobs = path.join(layout, 'blobs/sha256');
    const readBlob = (digest: string): Buffer => fs.readFileSync(path.join(blobs, digest.replace(/^sha256:/, '')));
    const putBlob = (data: Buffer): { digest: string; size: number } => {
      const hex = crypto.createHash('sha256').update(data).digest('hex');
      fs.writeFileSync(path.join(blobs, hex), data);
      return { digest: `sha256:${hex}`, size: data.length };
    };
    type Descriptor = { mediaType: string; digest: string; size: number; platform?: unknown; annotations?: Record<string, string> };
    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    const entry = index.manifests[0]!;
    const manifest = JSON.parse(readBlob(entry.digest).toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
    const config = JSON.parse(readBlob(manifest.config.digest).toString('utf8')) as { config: Record<string, unknown> };
    config.config = { ...config.config, Entrypoint: PAUSE_ENTRYPOINT, Cmd: null };
    const newConfig = putBlob(Buffer.from(JSON.stringify(config)));
    const newManifest = putBlob(Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, ...newConfig } })));
    const newIndex = {
      ...index,
      manifests: [
        {
          ...entry,
          ...newManifest,
          annotations: { 'io.containerd.image.name': PAUSE_IMAGE, 'org.opencontainers.image.ref.name': '1' },
        },
      ],
    };
    fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(newIndex));
    const out = path.join(fixturesDir(), 'pause-oci.tar');
    await runOk('tar', ['--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', `${out}.tmp`, 'oci-layout', 'index.json', 'blobs'], { timeoutMs: 60_000 });
    fs.renameSync(`${out}.tmp`, out);
    fs.rmSync(work, { recursive: true, force: true });
    return out;
  })();
  return pausePromise;
}

// ---------------------------------------------------------------------------------------------
// CNI: a private bridge network per containerd.

export interface CniNetwork {
  /** CNI network name (also the host-local IPAM data directory name under /var/lib/cni/networks). */
  name: string;
  /** Linux bridge device name (<= 15 characters). */
  bridge: string;
  /** e.g. 10.213.7.0/24 */
  subnet: string;
  /** The /24 prefix, e.g. "10.213.7." */
  prefix: string;
  confDir: string;
  /** host-local's data directory for this network. */
  ipamDir: string;
  /** Our temporary directory holding confDir (removed with the CriContainerd). */
  dir: string;
}

function usedIpv4Prefixes(): Set<string> {
  const used = new Set<string>();
  try {
    // /proc/net/route: Iface Destination(hex, little-endian) Gateway Flags ... Mask
    for (const line of fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) continue;
      const d = parseInt(f[1]!, 16);
      used.add(`${d & 0xff}.${(d >>> 8) & 0xff}.${(d >>> 16) & 0xff}.`);
    }
  } catch {
    // no routes readable: nothing known to avoid
  }
  return used;
}

function makeCniNetwork(dir: string): CniNetwork {
  const hex = crypto.randomBytes(4).toString('hex');
  const used = usedIpv4Prefixes();
  let prefix = '';
  for (let i = 0; i < 100; i++) {
    const b = 200 + crypto.randomInt(50);
    const c = crypto.randomInt(256);
    prefix = `10.${b}.${c}.`;
    if (!used.has(prefix)) break;
  }
  const net: CniNetwork = {
    name: `runcts-cri-${hex}`,
    bridge: `rcts${hex}`,
    subnet: `${prefix}0/24`,
    prefix,
    confDir: path.join(dir, 'net.d'),
    ipamDir: path.join('/var/lib/cni/networks', `runcts-cri-${hex}`),
    dir,
  };
  fs.mkdirSync(net.confDir, { recursive: true });
  const conflist = {
    cniVersion: '0.4.0',
    name: net.name,
    plugins: [
      {
        type: 'bridge',
        bridge: net.bridge,
        // No gateway on the host side and no masquerading: no ip_forward sysctl, no iptables.
        isGateway: false,
        ipMasq: false,
        hairpinMode: false,
        ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet }]] },
      },
    ],
  };
  fs.writeFileSync(path.join(net.confDir, '10-runcts.conflist'), JSON.stringify(conflist, null, 2));
  return net;
}

/** Addresses host-local still has allocated in this network (files named like IPs). */
export function allocatedIps(net: CniNetwork): string[] {
  try {
    return fs.readdirSync(net.ipamDir).filter(f => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  } catch {
    return [];
  }
}

/** Interfaces (pod veth ends) attached to the network's bridge. */
export function bridgePorts(net: CniNetwork): string[] {
  try {
    return fs.readdirSync(`/sys/class/net/${net.bridge}/brif`);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// cgroups under a pod's cgroup_parent (cgroupfs driver: <parent>/<container id>).

/** Container cgroup directories below cgroup parent `parent` in every hierarchy. */
export function cgroupsUnder(parent: string): string[] {
  const out: string[] = [];
  for (const h of cgroupHierarchies()) {
    const base = path.join(h, parent);
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(base);
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = path.join(base, e);
      try {
        if (fs.lstatSync(p).isDirectory()) out.push(p);
      } catch {
        // raced
      }
    }
  }
  return out;
}

/** Pids whose cgroup (any hierarchy) lies under `parent`. */
export function processesUnderCgroup(parent: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cg = fs.readFileSync(`/proc/${name}/cgroup`, 'utf8');
      if (cg.split('\n').some(l => l.split(':').slice(2).join(':').startsWith(`${parent}/`))) {
        const p = readProcess(Number(name));
        if (p && p.state !== 'Z') pids.push(p.pid);
      }
    } catch {
      // gone
    }
  }
  return pids;
}

/**
 * The cgroup v1 directory of `pid` in `controller` (cpu, cpuacct, memory, ...), from
 * /proc/<pid>/cgroup and the hierarchy mounted at /sys/fs/cgroup/<controller>.
 */
export function cgroupDirOf(pid: number, controller: string): string {
  const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean);
  for (const l of lines) {
    const [, ctrls, p] = /^\d+:([^:]*):(.*)$/.exec(l) ?? [];
    if (ctrls !== undefined && ctrls.split(',').includes(controller)) return path.join('/sys/fs/cgroup', controller, p!);
  }
  throw new Error(`pid ${pid} has no ${controller} cgroup: ${lines.join('; ')}`);
}

export function readCgroupFile(dir: string, file: string): string {
  return fs.readFileSync(path.join(dir, file), 'utf8').trim();
}

function removeCgroupTree(dir: string): boolean {
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return true;
  }
  for (const e of entries) {
    const p = path.join(dir, e);
    try {
      if (fs.lstatSync(p).isDirectory()) removeCgroupTree(p);
    } catch {
      // raced
    }
  }
  try {
    fs.rmdirSync(dir);
    return true;
  } catch {
    return !fs.existsSync(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// The CRI containerd.

export interface CriContainerdOptions {
  /** Which containerd (default the system's 1.6); see versions.ts. */
  version?: ContainerdVersion;
  /** TOML appended inside the generated config (after the CRI section). */
  extraConfig?: string;
  logLevel?: string;
  env?: Readonly<Record<string, string>>;
}

export class CriContainerd {
  readonly cri: CriClient;
  /** A cgroup parent of this containerd's own (pods use it, or sub-parents of it). */
  readonly cgroupParent: string;
  /** Where pod log directories go. */
  readonly logRoot: string;
  private stopped = false;

  constructor(
    readonly cd: Containerd,
    readonly net: CniNetwork,
  ) {
    this.cri = new CriClient(cd.address);
    this.cgroupParent = `/runcts-cri-${crypto.randomBytes(4).toString('hex')}`;
    this.logRoot = path.join(cd.dir, 'pods');
    fs.mkdirSync(this.logRoot, { recursive: true });
  }

  /**
   * Remove every pod (best effort, through the CRI), stop containerd (the harness cleans its
   * shims, mounts, runc state and directory), then what is ours alone: processes in and cgroups
   * under our cgroup parent, the bridge, host-local's data. Returns notes on what was left.
   */
  async stop(): Promise<string[]> {
    if (this.stopped) return [];
    this.stopped = true;
    const notes: string[] = [];
    if (this.cd.running) {
      try {
        const pods = await this.cri.listPodSandbox();
        await Promise.all(
          pods.map(async p => {
            notes.push(`pod ${p.metadata.name} (${p.id}) still present at stop`);
            await this.cri.stopPodSandbox(p.id, 30_000).catch((e: Error) => notes.push(`StopPodSandbox ${p.id}: ${e.message}`));
            await this.cri.removePodSandbox(p.id, 30_000).catch((e: Error) => notes.push(`RemovePodSandbox ${p.id}: ${e.message}`));
          }),
        );
      } catch (e) {
        notes.push(`listing pods at stop: ${(e as Error).message}`);
      }
    }
    this.cri.close();
    notes.push(...(await this.cd.stop()));

    const left = processesUnderCgroup(this.cgroupParent);
    for (const pid of left) {
      notes.push(`killed leftover process ${pid} in ${this.cgroupParent}`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (left.length) await waitFor(() => left.every(p => !isAlive(p)), { timeoutMs: 5_000 });
    for (const h of cgroupHierarchies()) {
      const d = path.join(h, this.cgroupParent);
      if (fs.existsSync(d) && !(await waitFor(() => removeCgroupTree(d), { timeoutMs: 5_000, intervalMs: 100 }))) notes.push(`cannot remove cgroup ${d}`);
    }
    if (fs.existsSync(`/sys/class/net/${this.net.bridge}`)) {
      const r = await run('ip', ['link', 'delete', this.net.bridge], { timeoutMs: 10_000 });
      if (r.code !== 0) notes.push(`ip link delete ${this.net.bridge}: ${r.stderr.trim()}`);
    }
    const ips = allocatedIps(this.net);
    if (ips.length) notes.push(`host-local still had ${ips.join(', ')} allocated`);
    fs.rmSync(this.net.ipamDir, { recursive: true, force: true });
    fs.rmSync(this.net.dir, { recursive: true, force: true });
    return notes;
  }
}

/** The table whose containerd.runtimes.NAME are the CRI handlers: moved in containerd 2.0. */
export function criRuntimeTable(dist: ContainerdDist): string {
  return dist.configVersion === 2 ? 'plugins."io.containerd.grpc.v1.cri"' : 'plugins."io.containerd.cri.v1.runtime"';
}

/**
 * The CRI plugin's config for this containerd version. 1.x (config version 2): everything under
 * [plugins."io.containerd.grpc.v1.cri"]. 2.x (version 3 and 4): the runtime part (handlers,
 * CNI, oom_score_adj, netns, log lines) under [plugins."io.containerd.cri.v1.runtime"], the
 * image part (snapshotter, the pinned sandbox image) under [plugins."io.containerd.cri.v1.images"],
 * only the streaming server under [plugins."io.containerd.grpc.v1.cri"]
 * (internal/cri/config/config.go: RuntimeConfig, ImageConfig, ServerConfig).
 */
export function criConfig(net: CniNetwork, dist: ContainerdDist): string {
  const q = tomlString;
  const handlers = (table: string): string[] => CRI_HANDLERS.flatMap(h => [`[${table}.containerd.runtimes.${h.name}]`, `  runtime_type = ${q(h.runtimeType)}`]);
  const streaming = [
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  stream_idle_timeout = "5m"',
    '  enable_tls_streaming = false',
  ];
  const runtimeKeys = [
    // Lowering oom_score_adj below containerd's own is refused on this kind of machine.
    '  restrict_oom_score_adj = true',
    // Network namespaces under containerd's state dir: ours alone, cleaned with it.
    '  netns_mounts_under_state_dir = true',
    '  max_container_log_line_size = 16384',
  ];
  if (dist.configVersion === 2) {
    const cri = criRuntimeTable(dist);
    return [
      `[${cri}]`,
      `  sandbox_image = ${q(PAUSE_IMAGE)}`,
      ...runtimeKeys,
      ...streaming,
      `[${cri}.containerd]`,
      '  snapshotter = "overlayfs"',
      '  default_runtime_name = "runc"',
      ...handlers(cri),
      `[${cri}.cni]`,
      `  bin_dir = ${q(CNI_BIN_DIR)}`,
      `  conf_dir = ${q(net.confDir)}`,
      '  max_conf_num = 1',
      '',
    ].join('\n');
  }
  const runtime = criRuntimeTable(dist);
  const images = 'plugins."io.containerd.cri.v1.images"';
  return [
    `[${runtime}]`,
    ...runtimeKeys,
    `[${runtime}.containerd]`,
    '  default_runtime_name = "runc"',
    ...handlers(runtime),
    `[${runtime}.cni]`,
    // bin_dir is deprecated in 2.x (a warning); bin_dirs replaces it.
    `  bin_dirs = [${q(CNI_BIN_DIR)}]`,
    `  conf_dir = ${q(net.confDir)}`,
    '  max_conf_num = 1',
    `[${images}]`,
    '  snapshotter = "overlayfs"',
    `[${images}.pinned_images]`,
    `  sandbox = ${q(PAUSE_IMAGE)}`,
    '[plugins."io.containerd.grpc.v1.cri"]',
    ...streaming,
    '',
  ].join('\n');
}

/**
 * The CRI plugin always uses namespace k8s.io, so runc's state directory
 * /run/containerd/runc/k8s.io is shared with any other containerd running Kubernetes pods on
 * this machine, and the harness' cleanup (Containerd.stop) deletes what it finds there. Refuse
 * to start while a shim of another containerd serves namespace k8s.io (a real node, or a second
 * CRI test process).
 */
function refuseSharedK8sNamespace(): void {
  const others = listProcesses().filter(p => {
    if (p.state === 'Z') return false;
    const ns = p.argv.indexOf('-namespace');
    return ns >= 0 && p.argv[ns + 1] === CRI_NAMESPACE && p.argv.includes('-address') && /containerd-shim/.test(p.argv.join(' '));
  });
  if (others.length) {
    throw new Error(
      `another containerd runs shims in namespace ${CRI_NAMESPACE} (${others.map(p => `pid ${p.pid}: ${p.argv.join(' ')}`).join('; ')}); ` +
        `the CRI tests share ${RUNC_STATE_ROOT}/${CRI_NAMESPACE} with it and would clean it up: not starting`,
    );
  }
}

/**
 * A containerd with the CRI plugin: namespace k8s.io, handlers runc and runcts, the pause and
 * busybox images imported (and visible to the CRI), a private CNI bridge network, and the
 * runtime and network conditions ready.
 */
export async function startCriContainerd(opts: CriContainerdOptions = {}): Promise<CriContainerd> {
  if (!fs.existsSync(path.join(CNI_BIN_DIR, 'bridge'))) throw new Error(`${CNI_BIN_DIR}/bridge missing: install containernetworking-plugins`);
  refuseSharedK8sNamespace();
  const [pauseTar, busyboxTar] = await Promise.all([pauseImageTar(), busyboxImageTar()]);
  // The network config must exist before containerd starts (the CRI plugin loads it at start).
  const netDir = fs.mkdtempSync('/tmp/rc-cni-');
  const net = makeCniNetwork(netDir);
  let cd: Containerd;
  try {
    cd = await startContainerd({
      version: opts.version,
      namespace: CRI_NAMESPACE,
      disabledPlugins: [],
      logLevel: opts.logLevel,
      env: opts.env,
      extraConfig: dist => criConfig(net, dist) + (opts.extraConfig ?? ''),
    });
  } catch (e) {
    fs.rmSync(netDir, { recursive: true, force: true });
    throw e;
  }
  const env = new CriContainerd(cd, net);
  try {
    await cd.ctrOk(['images', 'import', pauseTar], { timeoutMs: 120_000 });
    await cd.ctrOk(['images', 'import', busyboxTar], { timeoutMs: 120_000 });
    // The CRI plugin learns about images imported behind its back from image events.
    const seen = await waitFor(async () => (await env.cri.imageStatus(PAUSE_IMAGE)) !== null && (await env.cri.imageStatus(BUSYBOX_IMAGE)) !== null, { timeoutMs: 30_000, intervalMs: 100 });
    if (!seen) throw new Error(`the CRI plugin does not see the imported images: ${JSON.stringify(await env.cri.listImages())}`);
    const ready = await waitFor(
      async () => {
        // Only these two: containerd 2.x adds ContainerdHasNoDeprecationWarnings, false on this
        // cgroup v1 machine (informational; the kubelet does not wait for it).
        const s = await env.cri.status();
        const ok = (type: string): boolean => s.status.conditions.some(c => c.type === type && c.status);
        return ok('RuntimeReady') && ok('NetworkReady') ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    if (!ready) throw new Error(`CRI runtime/network not ready: ${JSON.stringify((await env.cri.status()).status)}`);
  } catch (e) {
    const tail = cd.logTail(80);
    await env.stop();
    throw new Error(`${(e as Error).message}\n(containerd log tail)\n${tail}`);
  }
  return env;
}

// ---------------------------------------------------------------------------------------------
// Pods and containers, configured the way the kubelet does.

export interface PodOptions {
  /** Pod network namespace: POD (CNI bridge, default) or NODE (host network). */
  network?: NamespaceMode;
  /** Pod-level pid namespace of the sandbox: POD (default, the pause process is pid 1) or NODE. */
  pid?: NamespaceMode;
  labels?: Record<string, string>;
}

export interface ContainerOptions {
  command: string[];
  args?: string[];
  /** Container pid namespace: CONTAINER (the kubelet's default for v1 pods) or POD. */
  pid?: NamespaceMode;
  resources?: LinuxContainerResources;
  tty?: boolean;
  stdin?: boolean;
  stdinOnce?: boolean;
  envs?: Record<string, string>;
  labels?: Record<string, string>;
}

let podCounter = 0;

export class Pod {
  readonly containers: string[] = [];

  constructor(
    readonly env: CriContainerd,
    readonly id: string,
    readonly config: PodSandboxConfig,
  ) {}

  get cri(): CriClient {
    return this.env.cri;
  }

  get logDirectory(): string {
    return this.config.log_directory!;
  }

  /** The ContainerConfig the kubelet would send for a busybox container named `name`. */
  containerConfig(name: string, o: ContainerOptions): ContainerConfig {
    const pidMode = o.pid ?? 'CONTAINER';
    const nsNetwork = this.config.linux?.security_context?.namespace_options?.network ?? 'POD';
    return {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      command: o.command,
      args: o.args ?? [],
      envs: Object.entries(o.envs ?? {}).map(([key, value]) => ({ key, value })),
      labels: { 'io.kubernetes.container.name': name, ...(o.labels ?? {}) },
      annotations: {},
      log_path: `${name}/0.log`,
      stdin: o.stdin ?? false,
      stdin_once: o.stdinOnce ?? false,
      tty: o.tty ?? false,
      linux: {
        resources: o.resources ?? {},
        security_context: { namespace_options: { network: nsNetwork, pid: pidMode, ipc: 'POD' } },
      },
    };
  }

  /** CreateContainer (the log directory first, as the kubelet does); returns the container id. */
  async create(name: string, o: ContainerOptions): Promise<string> {
    fs.mkdirSync(path.join(this.logDirectory, name), { recursive: true });
    const id = await this.cri.createContainer(this.id, this.containerConfig(name, o), this.config);
    this.containers.push(id);
    return id;
  }

  /** CreateContainer + StartContainer. */
  async run(name: string, o: ContainerOptions): Promise<string> {
    const id = await this.create(name, o);
    await this.cri.startContainer(id);
    return id;
  }

  logPath(name: string): string {
    return path.join(this.logDirectory, name, '0.log');
  }

  /** StopPodSandbox + RemovePodSandbox, errors collected (for finally blocks; an already removed pod is fine). */
  async remove(): Promise<string[]> {
    const errs: string[] = [];
    const keep = (e: Error): void => {
      if (!(e instanceof CriError && e.code === grpc.status.NOT_FOUND)) errs.push(e.message);
    };
    await this.cri.stopPodSandbox(this.id).catch(keep);
    await this.cri.removePodSandbox(this.id).catch(keep);
    return errs;
  }
}

/** The PodSandboxConfig the kubelet would send for pod `name`. */
export function podSandboxConfig(env: CriContainerd, name: string, o: PodOptions = {}): PodSandboxConfig {
  const uid = crypto.randomUUID();
  const ns = 'runcts-test';
  const logDir = path.join(env.logRoot, `${ns}_${name}_${uid}`);
  const network = o.network ?? 'POD';
  return {
    metadata: { name, uid, namespace: ns, attempt: 0 },
    hostname: network === 'NODE' ? '' : name,
    log_directory: logDir,
    labels: { 'io.kubernetes.pod.name': name, 'io.kubernetes.pod.namespace': ns, 'io.kubernetes.pod.uid': uid, ...(o.labels ?? {}) },
    annotations: {},
    linux: {
      cgroup_parent: env.cgroupParent,
      security_context: { namespace_options: { network, pid: o.pid ?? 'POD', ipc: 'POD' } },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Status helpers.

/** The container's init pid on the host, from ContainerStatus verbose info (0 when none). */
export async function containerPid(cri: CriClient, id: string): Promise<number> {
  const r = await cri.containerStatus(id, true);
  const info = JSON.parse(r.info.info ?? '{}') as { pid?: number };
  return info.pid ?? 0;
}

/** The sandbox (pause) pid on the host, from PodSandboxStatus verbose info. */
export async function sandboxPid(cri: CriClient, id: string): Promise<number> {
  const r = await cri.podSandboxStatus(id, true);
  const info = JSON.parse(r.info.info ?? '{}') as { pid?: number };
  return info.pid ?? 0;
}

/** Poll ContainerStatus until state; returns the last status (check .state). */
export async function waitContainerState(cri: CriClient, id: string, state: ContainerState, timeoutMs = 20_000): Promise<ContainerStatus> {
  let last: ContainerStatus | undefined;
  await waitFor(
    async () => {
      last = (await cri.containerStatus(id)).status;
      return last.state === state;
    },
    { timeoutMs, intervalMs: 50 },
  );
  return last!;
}

/** ExecSync that must exit 0; returns stdout as text. */
export async function execText(cri: CriClient, id: string, cmd: string[], timeoutSec = 0): Promise<string> {
  const r = await cri.execSync(id, cmd, timeoutSec);
  if (r.exit_code !== 0) throw new Error(`exec ${JSON.stringify(cmd)} exited ${r.exit_code}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

// ---------------------------------------------------------------------------------------------
// CRI container log format: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>`.

export interface CriLogLine {
  time: string;
  /** Nanoseconds since the epoch (as bigint: RFC3339Nano carries 9 digits). */
  timeNs: bigint;
  stream: 'stdout' | 'stderr';
  tag: 'F' | 'P';
  text: string;
}

const CRI_LOG_LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})) (stdout|stderr) (F|P) (.*)$/;

/** Parse a CRI log file's text; throws on the first line not in the format. */
export function parseCriLog(text: string): CriLogLine[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l, i) => {
    const m = CRI_LOG_LINE.exec(l);
    if (!m) throw new Error(`log line ${i + 1} not in CRI format: ${JSON.stringify(l)}`);
    const whole = m[1]!.replace(/\.\d+/, '');
    const ms = Date.parse(whole);
    if (Number.isNaN(ms)) throw new Error(`log line ${i + 1}: bad timestamp ${m[1]}`);
    const frac = (m[2] ?? '').padEnd(9, '0');
    return { time: m[1]!, timeNs: BigInt(ms) * 1_000_000n + BigInt(frac), stream: m[4] as 'stdout' | 'stderr', tag: m[5] as 'F' | 'P', text: m[6]! };
  });
}

/** Join P fragments with their closing F line: one entry per logical line, per stream. */
export function logicalLines(lines: readonly CriLogLine[], stream: 'stdout' | 'stderr'): string[] {
  const out: string[] = [];
  let partial = '';
  for (const l of lines) {
    if (l.stream !== stream) continue;
    if (l.tag === 'P') partial += l.text;
    else {
      out.push(partial + l.text);
      partial = '';
    }
  }
  if (partial) out.push(partial);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Streaming (Exec/Attach) over the websocket channel protocol.

export const STREAM_STDIN = 0;
export const STREAM_STDOUT = 1;
export const STREAM_STDERR = 2;
export const STREAM_ERROR = 3;
export const STREAM_RESIZE = 4;

/** A metav1.Status as v4.channel.k8s.io sends it on the error channel. */
export interface StreamStatus {
  status?: string;
  reason?: string;
  message?: string;
  details?: { causes?: Array<{ reason?: string; message?: string; type?: string }> };
}

/**
 * One websocket session with the CRI streaming server: each binary message starts with its
 * channel byte (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize).
 */
export class StreamSession {
  readonly channels = new Map<number, Buffer[]>();
  readonly protocol: string;
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];
  private isClosed = false;

  private constructor(private readonly ws: WebSocket) {
    this.protocol = ws.protocol;
    this.closed = new Promise(resolve => {
      ws.on('close', (code, reason) => {
        this.isClosed = true;
        this.wake();
        resolve({ code, reason: reason.toString() });
      });
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const buf = isBinary ? data : Buffer.from(data);
      if (buf.length === 0) return;
      const ch = buf[0]!;
      if (!this.channels.has(ch)) this.channels.set(ch, []);
      this.channels.get(ch)!.push(buf.subarray(1));
      this.wake();
    });
  }

  /** Connect to an Exec/Attach URL with the given subprotocol (default v4.channel.k8s.io). */
  static async connect(url: string, protocol = 'v4.channel.k8s.io', timeoutMs = 15_000): Promise<StreamSession> {
    const ws = new WebSocket(url, [protocol], { handshakeTimeout: timeoutMs });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`websocket upgrade refused: HTTP ${res.statusCode}`)));
    });
    return new StreamSession(ws);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  text(channel: number): string {
    return Buffer.concat(this.channels.get(channel) ?? []).toString('utf8');
  }

  send(channel: number, data: string | Buffer): void {
    this.ws.send(Buffer.concat([Buffer.from([channel]), Buffer.from(data)]), { binary: true });
  }

  resize(width: number, height: number): void {
    this.send(STREAM_RESIZE, JSON.stringify({ Width: width, Height: height }));
  }

  /** Wait until pred(text of channel) holds or the session closed or time ran out. */
  async waitFor(channel: number, pred: (text: string) => boolean, timeoutMs = 15_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (pred(this.text(channel))) return true;
      if (this.isClosed || Date.now() >= deadline) return false;
      await withTimeout(new Promise<void>(r => this.waiters.push(r)), Math.max(1, deadline - Date.now()));
    }
  }

  /** The status message on the error channel (v4: JSON metav1.Status), once the session closed. */
  async status(timeoutMs = 15_000): Promise<StreamStatus | string | undefined> {
    await withTimeout(this.closed, timeoutMs);
    const raw = this.text(STREAM_ERROR);
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as StreamStatus;
    } catch {
      return raw;
    }
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** The exit code a v4 status carries (0 for Success, the NonZeroExitCode cause otherwise). */
export function statusExitCode(s: StreamStatus | string | undefined): number | undefined {
  if (!s || typeof s === 'string') return undefined;
  if (s.status === 'Success') return 0;
  const cause = s.details?.causes?.find(c => c.reason === 'ExitCode' || c.type === 'ExitCode');
  return cause?.message !== undefined ? Number(cause.message) : undefined;
}

// ---------------------------------------------------------------------------------------------
// tap glue.

export interface CriScenarioContext {
  env: CriContainerd;
  cri: CriClient;
  cd: Containerd;
  handler: CriHandler;
  /** RunPodSandbox with the kubelet-like config; the pod is removed after the scenario. */
  runPod(name: string, o?: PodOptions): Promise<Pod>;
  /** Every sandbox id this scenario created (for the leak check of their shim sockets). */
  sandboxIds: string[];
}

export interface CriScenarioOptions {
  containerd?: CriContainerdOptions;
  /** tap timeout per handler (default 180 s). */
  timeoutMs?: number;
}

/** Leaks after a scenario: the harness' checks plus cgroups, CNI allocations, bridge ports, CRI objects. */
export async function findCriLeaks(env: CriContainerd, before: LeakSnapshot, sandboxIds: readonly string[]): Promise<{ leaks: string[]; notes: string[] }> {
  const { leaks, notes } = await findLeaks(env.cd, before, { ids: sandboxIds });
  for (const c of cgroupsUnder(env.cgroupParent)) leaks.push(`cgroup left: ${c}`);
  for (const p of processesUnderCgroup(env.cgroupParent)) leaks.push(`process left in ${env.cgroupParent}: ${p} ${readProcess(p)?.argv.join(' ')}`);
  for (const ip of allocatedIps(env.net)) leaks.push(`CNI address still allocated: ${ip}`);
  for (const port of bridgePorts(env.net)) leaks.push(`interface still on bridge ${env.net.bridge}: ${port}`);
  if (env.cd.running) {
    const pods = await env.cri.listPodSandbox().catch((e: Error) => [{ id: `ListPodSandbox failed: ${e.message}` } as PodSandbox]);
    for (const p of pods) leaks.push(`pod sandbox left: ${p.id}`);
    const ctrs = await env.cri.listContainers().catch((e: Error) => [{ id: `ListContainers failed: ${e.message}` } as Container]);
    for (const c of ctrs) leaks.push(`CRI container left: ${c.id}`);
  }
  return { leaks, notes };
}

/**
 * Define `name` once per CRI handler (runc first, then runcts) as subtests "<handler>: <name>",
 * each with its own CRI containerd; pods created through ctx.runPod are stopped and removed after
 * fn even when it failed; then the leak check; containerd's log tail is printed on failure.
 */
export function criScenario(t: Test, name: string, fn: (t: Test, ctx: CriScenarioContext) => Promise<void>, opts: CriScenarioOptions = {}): void {
  for (const handler of criHandlersUnderTest()) {
    void t.test(`${handler.name}: ${name}`, { timeout: opts.timeoutMs ?? 180_000 }, async t => {
      const env = await startCriContainerd(opts.containerd);
      t.teardown(async () => {
        if (!t.passing()) t.comment(`containerd log tail (${env.cd.logPath}):\n${env.cd.logTail(120)}`);
        const notes = await env.stop();
        for (const n of notes) t.comment(`cleanup: ${n}`);
      });
      const before = leakSnapshot();
      const pods: Pod[] = [];
      const ctx: CriScenarioContext = {
        env,
        cri: env.cri,
        cd: env.cd,
        handler,
        sandboxIds: [],
        async runPod(podName: string, o: PodOptions = {}): Promise<Pod> {
          const config = podSandboxConfig(env, `${podName}-${++podCounter}`, o);
          fs.mkdirSync(config.log_directory!, { recursive: true });
          const id = await env.cri.runPodSandbox(config, handler.name);
          ctx.sandboxIds.push(id);
          const pod = new Pod(env, id, config);
          pods.push(pod);
          return pod;
        },
      };
      try {
        await fn(t, ctx);
      } finally {
        if (env.cd.running) {
          // The kubelet's teardown of a pod must work whatever state the scenario left it in.
          for (const p of pods) {
            const errs = await p.remove();
            t.same(errs, [], `StopPodSandbox + RemovePodSandbox of pod ${p.config.metadata.name} succeed`);
          }
          const { leaks, notes } = await waitForNoLeaks(env, before, ctx.sandboxIds);
          for (const n of notes) t.comment(n);
          t.same(leaks, [], 'nothing leaked (shims, mounts, sockets, task dirs, runc state, cgroups, CNI addresses, pods, containers)');
        }
      }
    });
  }
}

/** findCriLeaks, retried for a few seconds (shims and cgroups take a moment to go). */
export async function waitForNoLeaks(env: CriContainerd, before: LeakSnapshot, sandboxIds: readonly string[], timeoutMs = 10_000): Promise<{ leaks: string[]; notes: string[] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await findCriLeaks(env, before, sandboxIds);
    if (r.leaks.length === 0 || Date.now() >= deadline) return r;
    await sleep(200);
  }
}

/** Processes of this CRI containerd's shims, and the handler each belongs to. */
export function shimsOf(env: CriContainerd): Array<{ pid: number; argv: string[]; id: string | undefined }> {
  return env.cd.shims().map(p => {
    const i = p.argv.indexOf('-id');
    return { pid: p.pid, argv: p.argv, id: i >= 0 ? p.argv[i + 1] : undefined };
  });
}
