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

/** Listen on a unix socket path; rejects with EADDRINUSE when the path exists. */
export function listenUnix(sockPath: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ path: sockPath, backlog: 128 }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

/** The listening fd behind a net.Server, to hand to the daemon as fd 3. */
export function serverFd(server: net.Server): number {
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('listening socket has no fd');
  return fd;
}

export function removeSocket(address: string): void {
  try {
    fs.unlinkSync(socketPath(address));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
