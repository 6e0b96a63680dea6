// The shim's unix socket: naming, atomic address publication, liveness probing.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

/** Where shim sockets live, as containerd's own shims use it. */
export const SOCKET_DIR = '/run/containerd/s';

/** `unix:///run/containerd/s/<sha256(containerdAddress/ns/group)>`, the naming containerd's Go shim uses. */
export function socketAddress(containerdAddress: string, namespace: string, group: string, dir = SOCKET_DIR): string {
  const digest = crypto.createHash('sha256').update(path.join(containerdAddress, namespace, group)).digest('hex');
  return `unix://${path.join(dir, digest)}`;
}

export function socketPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * Write a file so that readers see either nothing or all of it (DESIGN lesson 2): a temporary
 * name, then rename. No fsync: what we write lives in containerd's state directory (/run), which
 * does not outlive the machine, and readers on a live system see the rename whole.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'w', mode);
    try {
      fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function writeAddress(bundle: string, address: string): void {
  writeFileAtomic(path.join(bundle, 'address'), address);
}

export function readAddress(bundle: string): string | undefined {
  try {
    return fs.readFileSync(path.join(bundle, 'address'), 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** True when something accepts connections on the socket (a live shim). */
export function canConnect(sockPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(sockPath);
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(timer); resolve(false); });
  });
}

/**
 * Listen on a unix socket path, the socket file created with mode 0600 (the umask is set around
 * the bind, so no other user could connect in between); rejects with EADDRINUSE when the path exists.
 */
export function listenUnix(sockPath: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    listenPrivately(server, { path: sockPath, backlog: 128 }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

/**
 * server.listen with the umask at 0177 for the call: a path is bound synchronously inside
 * listen(), so the socket file is 0600 from its first moment.
 */
export function listenPrivately(server: net.Server, opts: net.ListenOptions | { fd: number }, cb: () => void): void {
  const umask = process.umask(0o177);
  try {
    server.listen(opts as net.ListenOptions, cb);
  } finally {
    process.umask(umask);
  }
}

/**
 * The directory of shim sockets, made 0700 when it is missing and tightened to 0700 when it is
 * open to others (the Go shim makes it 0600-or-so; any access for group or others is too much).
 */
export function ensureSocketDir(dir = SOCKET_DIR): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = fs.statSync(dir).mode & 0o777;
  if (mode & 0o077) fs.chmodSync(dir, 0o700);
}

/** The peer of a connected unix socket as the kernel recorded it at connect time (SO_PEERCRED). */
export type PeerCredentials = (fd: number) => { pid: number; uid: number; gid: number };

/**
 * A ttrpc accept check that serves only connections from our own effective uid, the same-user
 * rule of containerd's ttrpc handshaker: the socket's mode already keeps others out, this also
 * holds where a process of another uid could reach it anyway (CAP_DAC_OVERRIDE, a passed fd).
 */
export function sameUserOnly(
  peerCredentials: PeerCredentials,
  warn: (obj: object, msg: string) => void,
  uid = process.geteuid?.() ?? 0,
): (socket: net.Socket) => boolean {
  return (socket) => {
    const fd = handleFd(socket);
    if (fd === undefined) return false;
    const peer = peerCredentials(fd);
    if (peer.uid === uid) return true;
    warn({ peer }, `refusing a connection from uid ${peer.uid}: the shim serves uid ${uid} only`);
    return false;
  };
}

/** The fd behind a net.Server or net.Socket (libuv's handle), or undefined when it has none. */
function handleFd(s: net.Server | net.Socket): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** The listening fd behind a net.Server, to hand to the daemon as fd 3. */
export function serverFd(server: net.Server): number {
  const fd = handleFd(server);
  if (fd === undefined) throw new Error('listening socket has no fd');
  return fd;
}

export function removeSocket(address: string): void {
  try {
    fs.unlinkSync(socketPath(address));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
