// Run one child command to completion through the reaper (not Node's own spawn, which races the reaper), with a deadline
// and, when asked, its stdout (and stderr) captured.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { currentEnv, native } from '../framework/native';
import type { Reaper } from '../framework/reaper';

export interface CommandOptions {
  file: string;
  /** argv without argv[0]. */
  args: string[];
  /** Child fds 0, 1, 2 (-1: /dev/null); ignored for the streams that are captured. */
  stdio?: [number, number, number];
  /** Capture fd 1 (and fd 2 too with 'both'). */
  capture?: 'stdout' | 'both';
  /** SIGKILL the child after this long. */
  deadlineMs: number;
}

export interface CommandResult {
  status: number;
  output: string;
  timedOut: boolean;
}

export async function runCommand(reaper: Reaper, o: CommandOptions): Promise<CommandResult> {
  let outRead = -1;
  let outWrite = -1;
  if (o.capture) [outRead, outWrite] = native().pipe();
  const stdio: [number, number, number] = [...(o.stdio ?? [-1, -1, -1])];
  if (o.capture) stdio[1] = outWrite;
  if (o.capture === 'both') stdio[2] = outWrite;
  let child;
  try {
    child = reaper.spawn({ file: o.file, args: [o.file, ...o.args], env: currentEnv(), fds: stdio });
  } catch (err) {
    if (outRead >= 0) fs.closeSync(outRead);
    throw err;
  } finally {
    // The child has its copy; ours would keep the pipe from ever reaching EOF.
    if (outWrite >= 0) fs.closeSync(outWrite);
  }
  const output = outRead >= 0 ? readAll(outRead) : Promise.resolve('');
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }, o.deadlineMs);
  const exit = await child.exited;
  clearTimeout(timer);
  return { status: exit.status, output: await output, timedOut };
}

function readAll(fd: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = new net.Socket({ fd, readable: true, writable: false });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}
