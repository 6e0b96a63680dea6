// The short-lived side of the runc shim: `start` (find or launch the daemon) and `delete` (cleanup).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ShimFlags } from '../framework/flags';
import type { Logger } from '../framework/logger';
import { native } from '../framework/native';
import type { Reaper } from '../framework/reaper';
import { LINGER_ENV } from '../framework/launch';
import type { AnyMessage, StartInput } from '../framework/bootstrap';
import type { Manager, RuntimeInfo, ServeContext, Started, StopStatus } from '../framework/shim';
import { VERSION } from '../framework/shim';
import {
  canConnect, ensureSocketDir, listenUnix, readAddress, removeSocket, socketAddress, socketPath, writeAddress,
} from '../framework/socket';
import { readBundleState, type RuncOptions } from './bundle';
import { decodeOptions, runtimeOptionsOf } from './options';
import { runtimeFeatures } from './features';
import { unmountAll } from './mount';
import { joinCgroup } from './cgroups/join';
import { adjustOwnOomScore } from '../framework/oom-score';
import { Runc } from './runc';

/** Annotations that put a container into an existing shim's group (as containerd's Go shim reads them). */
const GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'];

export const SHIM_NAME = 'containerd-shim-runcts-v2';
export const RUNTIME_TYPE = 'io.containerd.runcts.v2';
/** The group name of the one daemon of a namespace (ShimGrouping = "namespace"). */
const NAMESPACE_GROUP = '.runcts-namespace';
/** An idle namespace daemon waits this long for the next container before it exits. */
const NAMESPACE_LINGER_MS = 10_000;
const SIGKILL = 9;

export class RuncManager implements Manager {
  readonly name = SHIM_NAME;

  async start(flags: ShimFlags, bundle: string, input: StartInput): Promise<Started> {
    const options = decodeOptions(runtimeOptionsOf(input.extensions));
    const byNamespace = options.shim_grouping === 'namespace';
    const group = byNamespace ? NAMESPACE_GROUP : groupOf(bundle) ?? flags.id;
    const address = socketAddress(flags.address, flags.namespace, group, input.socketDir);
    const sock = socketPath(address);
    ensureSocketDir(input.socketDir);

    // Serialise starts on this host: two starts of one group must end with one daemon, and a
    // stale socket must be replaced by exactly one of them. Once the new socket listens, a later
    // start finds it alive (connections queue until the daemon serves): the lock can go then.
    const lockFd = fs.openSync(input.socketDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      native().lockExclusive(lockFd);
      let listener;
      try {
        listener = await listenUnix(sock);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw new Error(`create new shim socket: ${String(err)}`);
        if (await canConnect(sock)) {
          writeAddress(bundle, address);
          return { address };
        }
        removeSocket(address);
        listener = await listenUnix(sock);
      }
      try {
        // This process goes on as the daemon (or spawns it, which inherits both): node
        // citizenship first, so that a failure fails the start as the Go shim's does.
        if (options.shim_cgroup) joinCgroup(options.shim_cgroup, process.pid);
        adjustOwnOomScore();
        // The address is published only once the socket listens (DESIGN lesson 2).
        writeAddress(bundle, address);
      } catch (err) {
        listener.close(); // libuv unlinks the path of a server it bound itself
        throw err;
      }
      return { address, daemon: { listener, lingerMs: byNamespace ? namespaceLinger() : 0 } };
    } finally {
      fs.closeSync(lockFd);
    }
  }

  async stop(flags: ShimFlags, bundle: string, reaper: Reaper, log: Logger): Promise<StopStatus> {
    const state = readBundleState(bundle);
    const runcRoot = Runc.rootFor(state.options.root, flags.namespace);
    const runc = new Runc({
      binary: state.options.binary_name || 'runc',
      root: runcRoot,
      bundle,
      reaper,
      debug: flags.debug,
    });
    // After a clean shutdown runc's state is gone already: skip the runc call (containerd runs
    // `delete` after every shim disconnect, on the path of each container's removal).
    if (fs.existsSync(path.join(runcRoot, flags.id))) {
      try {
        await runc.delete(flags.id, { force: true });
      } catch (err) {
        log.warn({ err }, 'failed to remove runc container');
      }
    }
    try {
      unmountAll(path.join(bundle, 'rootfs'));
    } catch (err) {
      log.warn({ err }, 'failed to cleanup rootfs mount');
    }
    // The dead daemon cannot remove its socket; a socket nobody answers on is ours to clear.
    const address = readAddress(bundle);
    if (address) {
      // Under start's lock: a start may be binding a new daemon on this very path (namespace
      // grouping reuses it), and its socket must not be removed between its bind and our check.
      const lockFd = fs.openSync(path.dirname(socketPath(address)), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try {
        native().lockExclusive(lockFd);
        if (!(await canConnect(socketPath(address)))) removeSocket(address);
      } finally {
        fs.closeSync(lockFd);
      }
    }
    let pid = 0;
    try {
      pid = Number.parseInt(fs.readFileSync(path.join(bundle, 'init.pid'), 'utf8'), 10) || 0;
    } catch {
      /* the container may never have been created */
    }
    return { pid, exitStatus: 128 + SIGKILL, exitedAt: new Date() };
  }

  /** As the Go shim's manager.Info: who we are, the options asked about, and the runtime's features. */
  async info(any: AnyMessage | undefined, reaper: Reaper): Promise<RuntimeInfo> {
    const options = decodeOptions(any);
    const features = await runtimeFeatures(options.binary_name || 'runc', reaper);
    // The Go shim names itself by its runtime type here (not by its binary, as -v does).
    return { name: RUNTIME_TYPE, version: { version: VERSION, revision: '' }, options: any, features };
  }

  async serve(ctx: ServeContext): Promise<void> {
    const { TaskService } = await import('./service'); // the daemon only: start and delete never need it
    const service = new TaskService(ctx);
    service.register(ctx.server);
    ctx.diagnostics.add('tasks', () => service.describe());
  }
}

function groupOf(bundle: string): string | undefined {
  let spec: { annotations?: Record<string, string> };
  try {
    spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  } catch {
    return undefined;
  }
  for (const a of GROUP_ANNOTATIONS) {
    const v = spec.annotations?.[a];
    if (v) return v;
  }
  return undefined;
}

/** A namespace daemon lingers when idle; containerd's environment may set how long (tests do). Never 0 or less: without a linger the daemon would exit without the lock. */
function namespaceLinger(): number {
  const wanted = Number(process.env[LINGER_ENV]);
  return wanted > 0 ? wanted : NAMESPACE_LINGER_MS;
}
