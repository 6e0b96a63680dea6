// The floor: runc driven directly, without containerd and without a shim, on the same busybox
// rootfs fixture. `runc run` of `true` (a container's whole lifecycle) and `runc exec` of `true`
// into a running container. Private runc root, cgroups under /runcts-bench-<hex>/<id>.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupHierarchies, runOk } from '../integration/harness';
import { timeMs } from './util';

export class RuncFloor {
  private readonly bundle: string;
  private readonly root: string;
  private readonly cgroupParent = `/runcts-bench-${crypto.randomBytes(4).toString('hex')}`;
  private readonly running = new Set<string>();

  private constructor(
    private readonly dir: string,
    private readonly rootfs: string,
    private readonly spec: Record<string, any>,
  ) {
    this.bundle = path.join(dir, 'bundle');
    this.root = path.join(dir, 'runc-root');
  }

  /** A bundle over `rootfs` with runc's default spec (namespaces pid, net, ipc, uts, mount). */
  static async create(rootfs: string): Promise<RuncFloor> {
    const dir = fs.mkdtempSync('/tmp/rc-bench-runc-');
    const bundle = path.join(dir, 'bundle');
    fs.mkdirSync(bundle);
    await runOk('runc', ['spec', '--bundle', bundle], { timeoutMs: 10_000 });
    const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as Record<string, any>;
    return new RuncFloor(dir, rootfs, spec);
  }

  private runc(args: string[]): Promise<unknown> {
    return runOk('runc', ['--root', this.root, ...args], { timeoutMs: 30_000 });
  }

  /** config.json for one container (its own cgroup), written before runc reads it. */
  private writeConfig(id: string, args: string[]): void {
    const spec = {
      ...this.spec,
      root: { path: this.rootfs, readonly: false },
      process: { ...this.spec.process, terminal: false, args },
      linux: { ...this.spec.linux, cgroupsPath: `${this.cgroupParent}/${id}` },
    };
    fs.writeFileSync(path.join(this.bundle, 'config.json'), JSON.stringify(spec));
  }

  /** ms for `runc run --bundle B id` of /bin/true, to its exit (runc deletes the container). */
  runTrue(id: string): Promise<number> {
    this.writeConfig(id, ['/bin/true']);
    return timeMs(() => this.runc(['run', '--bundle', this.bundle, id]));
  }

  /** `runc run -d` of a sleeper (stdio on /dev/null: a detached container keeps its stdio open). */
  async startSleeper(id: string): Promise<void> {
    this.writeConfig(id, ['/bin/sleep', '1000000']);
    await new Promise<void>((resolve, reject) => {
      const child = spawn('runc', ['--root', this.root, 'run', '-d', '--bundle', this.bundle, id], { stdio: 'ignore' });
      child.on('error', reject);
      child.on('exit', code => (code === 0 ? resolve() : reject(new Error(`runc run -d ${id}: exit ${code}`))));
    });
    this.running.add(id);
  }

  /** ms for `runc exec id /bin/true`. */
  execTrue(id: string): Promise<number> {
    return timeMs(() => this.runc(['exec', id, '/bin/true']));
  }

  /** Delete the sleepers, the cgroups and the directory. */
  async cleanup(): Promise<void> {
    for (const id of this.running) await this.runc(['delete', '--force', id]).catch(() => undefined);
    this.running.clear();
    // runc removes a container's cgroup on delete; the parent is ours to remove.
    for (const h of cgroupHierarchies()) rmdirQuiet(path.join(h, this.cgroupParent));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function rmdirQuiet(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // gone, or never created in this hierarchy
  }
}
