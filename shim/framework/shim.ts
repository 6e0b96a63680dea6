// The shim v2 CLI contract: `start`, `delete`, `-v` and the long-running daemon, for any Manager.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { type AnyMessage, type StartInput, StartInputError, readStartInput, startOutput } from './bootstrap';
import { FlagError, parseFlags, type ShimFlags } from './flags';
import type { Diagnostics } from './diagnostics';
import type { FifoLogSink, Logger } from './logger';
import type { Publisher } from './publisher';
import type { Reaper } from './reaper';
import { IdleExit } from './idle-exit';
import { installRoot } from './install-root';
import { EarlyConnections, LINGER_ENV, StartStatus, becomeDaemon, spawnDaemon } from './launch';
import { SOCKET_DIR, listenPrivately, readAddress, removeSocket, sameUserOnly, socketPath } from './socket';
import type { TtrpcServer } from './ttrpc';
// Everything else is loaded by the action that needs it: `start` runs for every container and
// must not pay for protobuf, ttrpc or logging it never uses.

export const VERSION = '0.1.0';
/** In dist/: the git commit the build was made from. */
const REVISION_FILE = 'revision';

export interface StopStatus {
  pid: number;
  exitStatus: number;
  exitedAt: Date;
}

/** What `start` did: the address to print and, when it bound a new socket, what a daemon must serve. */
export interface Started {
  address: string;
  daemon?: {
    /** Listening already (its address is published): connections queue until the daemon serves. */
    listener: net.Server;
    /** How long the daemon waits, once idle, before it exits (a daemon shared by a namespace); 0: at once. */
    lingerMs: number;
  };
}

/** What the daemon hands to the implementation: no globals, everything injected. */
export interface ServeContext {
  flags: ShimFlags;
  bundle: string;
  log: Logger;
  /** Where `log` writes: add each container's `log` fifo at Create and remove it at Delete. */
  logs: Pick<FifoLogSink, 'add' | 'remove'>;
  /** Parts of the SIGUSR1 dump: register what the implementation knows. */
  diagnostics: Pick<Diagnostics, 'add'>;
  server: TtrpcServer;
  publisher: Publisher;
  reaper: Reaper;
  /**
   * Nothing is left to serve: stop serving and exit (after in-flight requests and queued events),
   * at once, or, for a daemon shared by a namespace (Started.daemon.lingerMs), once `isIdle` still
   * holds after the linger time.
   */
  shutdown(isIdle?: () => boolean): void;
}

/** containerd.types.RuntimeInfo, what `-info` prints. */
export interface RuntimeInfo {
  name: string;
  version: { version: string; revision: string };
  options?: AnyMessage;
  features?: AnyMessage;
  annotations?: Record<string, string>;
}

export interface Manager {
  /** Binary name shown by -v. */
  name: string;
  /**
   * `start`: find the daemon that serves this container, or bind and publish a new socket for
   * one (the framework then launches the daemon on it). `input` is what containerd sent, in
   * either dialect (./bootstrap).
   */
  start(flags: ShimFlags, bundle: string, input: StartInput): Promise<Started>;
  /** `-info`: describe the runtime for these runtime options (containerd 2.x). */
  info(options: AnyMessage | undefined, reaper: Reaper): Promise<RuntimeInfo>;
  /** `delete`: clean up after a dead daemon. */
  stop(flags: ShimFlags, bundle: string, reaper: Reaper, log: Logger): Promise<StopStatus>;
  /** Daemon: register services on ctx.server. */
  serve(ctx: ServeContext): Promise<void>;
}

export async function runShim(manager: Manager, argv = process.argv.slice(2)): Promise<number> {
  // bin/ runs `start` this way (shim/framework/launch.ts); its action word is left out of argv
  // so that `ps` shows the daemon it may become like any other.
  const startStatus = StartStatus.fromEnv();
  let flags: ShimFlags;
  try {
    flags = parseFlags(argv);
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (flags.version) {
    // Whether this process started from the startup snapshot (bin/ falls back to plain modules without one).
    const snapshot = process.execArgv.includes('--snapshot-blob') ? 'yes' : 'no';
    process.stdout.write(`${manager.name}:\n  Version:  ${VERSION}\n  Revision: ${revision()}\n  Node.js:  ${process.version}\n  Snapshot: ${snapshot}\n\n`);
    return 0;
  }
  // Before the namespace check, as the Go shim: containerd runs `-info` with no other flag.
  if (flags.info) return printInfo(manager);
  if (!flags.namespace) {
    process.stderr.write('shim namespace cannot be empty\n');
    return 1;
  }
  const bundle = flags.bundle || process.cwd();
  if (startStatus) {
    if (flags.action !== '') {
      process.stderr.write(`unexpected action ${JSON.stringify(flags.action)} for start\n`);
      return 2;
    }
    flags.action = 'start';
  }
  switch (flags.action) {
    case 'start': {
      let input: StartInput;
      try {
        input = readStartInput(readStdin(), flags);
      } catch (err) {
        if (!(err instanceof StartInputError)) throw err;
        process.stderr.write(`${err.message}\n`);
        return 1;
      }
      const started = await manager.start(flags, bundle, input);
      // Synchronous: containerd reads exactly this output, and then the start is over.
      fs.writeSync(1, startOutput(input, started.address));
      if (!started.daemon) return 0;
      const { listener, lingerMs } = started.daemon;
      if (!startStatus) {
        spawnDaemon(manager.name, flags, bundle, listener, lingerMs);
        // Not closed: closing would unlink the socket the daemon now serves; our fd goes with our exit.
        listener.unref();
        return 0;
      }
      const early = new EarlyConnections(listener);
      becomeDaemon(startStatus);
      flags.action = '';
      return serve(manager, flags, bundle, { listener, lingerMs, early });
    }
    case 'delete': {
      const [{ Reaper }, { native }, { silentLogger }, { messageType }, { toTimestamp }] = await Promise.all([
        import('./reaper'), import('./native'), import('./logger'), import('./proto'), import('./publisher'),
      ]);
      const reaper = Reaper.start(native());
      const ss = await manager.stop(flags, bundle, reaper, silentLogger());
      reaper.stop();
      const t = messageType('containerd.task.v2.DeleteResponse');
      const out = t.encode(t.fromObject({ pid: ss.pid, exit_status: ss.exitStatus, exited_at: toTimestamp(ss.exitedAt) })).finish();
      fs.writeSync(1, out);
      return 0;
    }
    case '':
      return serve(manager, flags, bundle);
    default:
      process.stderr.write(`unknown action ${JSON.stringify(flags.action)}\n`);
      return 2;
  }
}

/** `-info`: the runtime options Any on stdin (or nothing), a protobuf RuntimeInfo on stdout. */
async function printInfo(manager: Manager): Promise<number> {
  const [{ Reaper }, { native }, { messageType }] = await Promise.all([import('./reaper'), import('./native'), import('./proto')]);
  const stdin = readStdin();
  const options = stdin.length ? (messageType('google.protobuf.Any').decode(stdin) as unknown as AnyMessage) : undefined;
  const reaper = Reaper.start(native());
  try {
    const info = await manager.info(options?.type_url ? options : undefined, reaper);
    const t = messageType('containerd.types.RuntimeInfo');
    fs.writeSync(1, t.encode(t.fromObject({ ...info, version: { ...info.version, revision: info.version.revision || revision() } })).finish());
    return 0;
  } finally {
    reaper.stop();
  }
}

/** The commit this build was made from (written by `make`), or ''. */
export function revision(): string {
  try {
    return fs.readFileSync(path.join(installRoot(), 'dist', REVISION_FILE), 'utf8').trim();
  } catch {
    return '';
  }
}

/** containerd passes `start` its BootstrapParams or runtime options, and `-info` the options, on stdin. */
function readStdin(): Buffer {
  try {
    if (fs.fstatSync(0).isCharacterDevice()) return Buffer.alloc(0); // run by hand on a terminal
    return fs.readFileSync(0);
  } catch {
    return Buffer.alloc(0);
  }
}

/**
 * The daemon. `bound`: the socket its own `start` bound (in place); otherwise fd 3 (spawned by a
 * `start`) or -socket, and the linger from the environment `start` gave it.
 */
async function serve(
  manager: Manager, flags: ShimFlags, bundle: string, bound?: NonNullable<Started['daemon']> & { early: EarlyConnections },
): Promise<number> {
  const [{ openFifoLogger }, { Reaper }, { native }, { RemotePublisher }, { TtrpcServer }, { Diagnostics }] = await Promise.all([
    import('./logger'), import('./reaper'), import('./native'), import('./publisher'), import('./ttrpc'), import('./diagnostics'),
  ]);
  const { log, sink: logs } = openFifoLogger(path.join(bundle, 'log'), flags.logLevel || flags.debug, { namespace: flags.namespace, id: flags.id });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));

  const reaper = Reaper.start(native(), log);
  const publisher = new RemotePublisher(process.env.TTRPC_ADDRESS ?? '', log);
  const server = new TtrpcServer({ logger: log, accept: sameUserOnly(native().peerCredentials, (o, m) => log.warn(o, m)) });

  let requestShutdown!: () => void;
  const shutdownRequested = new Promise<void>((resolve) => { requestShutdown = resolve; });
  process.on('SIGTERM', () => requestShutdown());
  process.on('SIGINT', () => requestShutdown());

  // Read now: a daemon shared by many containers may outlive the bundle it was started in.
  const address = readAddress(bundle);
  const listener = bound?.listener ?? net.createServer();
  const lingerMs = bound ? bound.lingerMs : Number(process.env[LINGER_ENV] ?? 0);
  let idleExit: IdleExit | undefined;
  const watchIdle = () => {
    // The lock of start is the directory of our socket (containerd 2.3 may choose it: socket_dir).
    const socketDir = address ? path.dirname(socketPath(address)) : SOCKET_DIR;
    if (lingerMs > 0) idleExit = new IdleExit(listener, socketDir, lingerMs, () => requestShutdown());
  };
  const shutdown = (isIdle?: () => boolean) => {
    if (idleExit && isIdle) idleExit.arm(isIdle);
    else requestShutdown();
  };
  const diagnostics = new Diagnostics();
  diagnostics.add('ttrpc', () => ({ connections: server.connectionCount }));
  diagnostics.add('events', () => publisher.describe());
  diagnostics.onSignal(log);
  await manager.serve({ flags, bundle, log, logs, server, publisher, reaper, shutdown, diagnostics });

  if (bound) {
    bound.early.handOver(() => {
      watchIdle();
      server.serve(listener);
    });
  } else {
    watchIdle();
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      // fd 3 is the socket `start` bound and listened on before publishing its address.
      listenPrivately(listener, flags.socket ? { path: flags.socket } : { fd: 3 }, () => resolve());
    });
    server.serve(listener);
  }
  log.info({ bundle, lingerMs }, 'shim serving');

  await shutdownRequested;
  log.info('shim shutting down');
  listener.close();
  await server.shutdown();
  if (address) removeSocket(address);
  await publisher.close(5000);
  reaper.stop();
  return 0;
}
