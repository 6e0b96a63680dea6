// One container: its bundle, rootfs, runc handle and init process.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../framework/logger';
import type { Reaper } from '../framework/reaper';
import { messageType } from '../framework/proto';
import { hasOwnPidNamespace, writeBundleState, type RuncOptions } from './bundle';
import { invalidArgument, runtimeError, unimplemented } from './errors';
import { ProcessIO, type StdioPaths } from './io';
import { mountAll, unmountAll, type MountSpec } from './mount';
import { InitProcess, type InitHooks } from './process/init';
import { Runc } from './runc';

const OPTIONS_TYPE = 'containerd.runc.v1.Options';

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
}

export function decodeOptions(any: CreateRequest['options']): RuncOptions {
  if (!any || !any.type_url) return {};
  const name = any.type_url.replace(/^.*\//, '');
  if (name !== OPTIONS_TYPE) throw invalidArgument(`unsupported runtime options type ${any.type_url}`);
  const t = messageType(OPTIONS_TYPE);
  return t.toObject(t.decode(any.value), { defaults: false, longs: Number }) as RuncOptions;
}

export class Container {
  private constructor(
    readonly id: string,
    readonly bundle: string,
    readonly rootfs: string,
    readonly init: InitProcess,
  ) {}

  static async create(r: CreateRequest, deps: ContainerDeps, hooks: InitHooks): Promise<Container> {
    if (r.terminal) throw unimplemented('terminal (console socket) is not supported by this shim yet');
    if (r.checkpoint) throw unimplemented('restore from checkpoint is not supported by this shim yet');
    if (!path.isAbsolute(r.bundle) || !fs.existsSync(path.join(r.bundle, 'config.json'))) {
      throw invalidArgument(`bundle ${r.bundle} has no config.json`);
    }
    const opts = decodeOptions(r.options);
    writeBundleState(r.bundle, opts);
    const runc = new Runc({
      binary: opts.binary_name || 'runc',
      root: Runc.rootFor(opts.root, deps.namespace),
      bundle: r.bundle,
      reaper: deps.reaper,
      debug: deps.debug,
      systemdCgroup: opts.systemd_cgroup,
    });

    const rootfs = r.rootfs.length > 0 ? path.join(r.bundle, 'rootfs') : '';
    const stdio: StdioPaths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    let io: ProcessIO | undefined;
    try {
      if (rootfs) {
        fs.mkdirSync(rootfs, { recursive: true, mode: 0o711 });
        try {
          mountAll(r.rootfs, rootfs);
        } catch (err) {
          throw runtimeError(err, 'failed to mount rootfs component');
        }
      }
      io = ProcessIO.create(stdio);
      const pidFile = path.join(r.bundle, 'init.pid');
      // Exits collected from here on may be the init's (it is reparented to us when runc create exits).
      const exitsFrom = deps.reaper.mark();
      try {
        await runc.create(r.id, {
          bundle: r.bundle, pidFile, stdio: io.childFds, noPivot: opts.no_pivot_root, noNewKeyring: opts.no_new_keyring,
        });
      } catch (err) {
        throw runtimeError(err, 'OCI runtime create failed');
      }
      io.closeChildEnds();
      io.startCopy();
      // Read the pid only after runc create returned: the pid file is written by rename (complete), but its
      // exit may already have been reaped; InitProcess claims it from the reaper either way.
      const pid = InitProcess.readPidFile(pidFile);
      const init = new InitProcess(r.id, pid, r.bundle, stdio, io, runc, !hasOwnPidNamespace(r.bundle), hooks, deps.log, deps.reaper.wait(pid, exitsFrom));
      return new Container(r.id, r.bundle, rootfs, init);
    } catch (err) {
      io?.close();
      await runc.delete(r.id, { force: true }).catch(() => undefined);
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

  /** Delete the init (and with it the container), then release the rootfs. */
  async delete(log: Logger) {
    const exit = await this.init.delete();
    if (this.rootfs) {
      try {
        unmountAll(this.rootfs);
      } catch (err) {
        log.warn({ err, rootfs: this.rootfs }, 'failed to unmount rootfs');
      }
    }
    return exit;
  }
}
