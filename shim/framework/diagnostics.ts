// SIGUSR1: a dump of the daemon's state into its log, for an operator asking "what is this shim
// doing" without stopping it. Each part of the shim registers what it knows (the runc service its
// containers, processes and pending execs; the publisher its queued events); the framework adds
// its own (open fds, connections, memory). Reading state only: the dump never changes anything.
// The handler also replaces node's default for SIGUSR1, which opens a debugger port.
import * as fs from 'node:fs';
import type { Logger } from './logger';

export type Describe = () => unknown;

export class Diagnostics {
  private readonly parts = new Map<string, Describe>();

  /** Register a named part of the dump; a later add of the same name replaces it. */
  add(name: string, describe: Describe): void {
    this.parts.set(name, describe);
  }

  /** Everything registered, each part on its own: one that throws is reported, not fatal. */
  dump(): Record<string, unknown> {
    const out: Record<string, unknown> = {
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      memory: process.memoryUsage(),
      fds: openFds(),
    };
    for (const [name, describe] of this.parts) {
      try {
        out[name] = describe();
      } catch (err) {
        out[name] = { error: String(err) };
      }
    }
    return out;
  }

  /** Write a dump into the log at every SIGUSR1; returns the uninstaller. */
  onSignal(log: Logger, signal: NodeJS.Signals = 'SIGUSR1'): () => void {
    const handler = () => log.info({ dump: this.dump() }, 'diagnostic dump');
    process.on(signal, handler);
    return () => process.removeListener(signal, handler);
  }
}

/** fd -> what it refers to (a path, socket:[inode], pipe:[inode], anon_inode:...). */
export function openFds(procSelf = '/proc/self'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const fd of fs.readdirSync(`${procSelf}/fd`)) {
    try {
      out[fd] = fs.readlinkSync(`${procSelf}/fd/${fd}`);
    } catch {
      // closed between readdir and readlink (the readdir's own fd, among others)
    }
  }
  return out;
}
