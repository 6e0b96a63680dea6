// Checkpoint through `runc checkpoint` (criu). Where criu cannot work on the machine the caller
// gets FailedPrecondition saying so, instead of criu's low-level failure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Reaper } from '../framework/reaper';
import { messageType } from '../framework/proto';
import { TtrpcError } from '../framework/ttrpc/codes';
import type { Container } from './container';
import { criuStatus } from './criu';
import { failedPrecondition, invalidArgument, runtimeError } from './errors';

const OPTIONS_TYPE = 'containerd.runc.v1.CheckpointOptions';

/** criu's settings for a dump or a restore, as every containerd options message spells them. */
export interface CriuFlags {
  open_tcp?: boolean;
  external_unix_sockets?: boolean;
  terminal?: boolean;
  file_locks?: boolean;
  empty_namespaces?: string[];
  cgroups_mode?: string;
}

export interface CheckpointRequestOptions extends CriuFlags {
  exit?: boolean;
  image_path?: string;
  work_path?: string;
}

export function decodeCheckpointOptions(any: { type_url?: string; value?: Uint8Array } | null | undefined): CheckpointRequestOptions {
  if (!any?.type_url) return {};
  if (any.type_url.replace(/^.*\//, '') !== OPTIONS_TYPE) throw invalidArgument(`unsupported checkpoint options type ${any.type_url}`);
  const t = messageType(OPTIONS_TYPE);
  return t.toObject(t.decode(any.value ?? new Uint8Array()), { defaults: false }) as CheckpointRequestOptions;
}

/** Dump the container's processes into `imagePath`; with `exit` set the container ends with the dump. */
export async function checkpointContainer(c: Container, imagePath: string, o: CheckpointRequestOptions, reaper: Reaper): Promise<void> {
  c.init.allow('checkpoint');
  const criu = await criuStatus(reaper);
  if (!criu.usable) {
    throw failedPrecondition(`checkpoint needs criu, which does not work on this machine: ${criu.reason}`);
  }
  // criu's work files (its dump.log) go to a directory of our own unless the caller keeps them.
  const workPath = o.work_path || path.join(c.bundle, 'criu-work');
  try {
    await c.init.checkpoint({
      imagePath, workPath, leaveRunning: !o.exit, openTcp: o.open_tcp, externalUnixSockets: o.external_unix_sockets,
      terminal: o.terminal, fileLocks: o.file_locks, emptyNamespaces: o.empty_namespaces, cgroupsMode: o.cgroups_mode,
    });
  } catch (err) {
    // Keep criu's log where the Go shim keeps it, and name it in the error.
    const dumpLog = path.join(c.bundle, 'criu-dump.log');
    try {
      fs.copyFileSync(path.join(workPath, 'dump.log'), dumpLog);
    } catch {
      /* criu did not get as far as writing it */
    }
    const e = runtimeError(err, 'OCI runtime checkpoint failed');
    throw new TtrpcError(e.code, `${e.message.split('\n')[0]} (criu log: ${dumpLog})`);
  } finally {
    if (!o.work_path) fs.rmSync(workPath, { recursive: true, force: true });
  }
}
