// What `delete` needs after a crash, persisted atomically in the bundle at create time (STYLE 6).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../framework/socket';

/** containerd.runc.v1.Options as JSON, with the Go shim's file name and snake_case keys. */
export interface RuncOptions {
  binary_name?: string;
  root?: string;
  systemd_cgroup?: boolean;
  no_pivot_root?: boolean;
  no_new_keyring?: boolean;
  criu_path?: string;
  shim_cgroup?: string;
  io_uid?: number;
  io_gid?: number;
  criu_image_path?: string;
  criu_work_path?: string;
  /** runcts only (TOML options): 'namespace' shares one daemon across the namespace; default 'pod'. */
  shim_grouping?: 'pod' | 'namespace';
}

const OPTIONS_FILE = 'options.json';
const RUNTIME_FILE = 'runtime';
/** bin/containerd-shim-runcts-v2 prints this file for `delete` when it exists. */
const DELETE_RESPONSE_FILE = 'delete-response.pb';

export function writeBundleState(bundle: string, options: RuncOptions): void {
  writeState(path.join(bundle, OPTIONS_FILE), JSON.stringify(options));
  // The Go shim writes the runtime binary name separately too; keep the same files for tools that read them.
  writeState(path.join(bundle, RUNTIME_FILE), options.binary_name ?? '');
}

/** writeFileAtomic, its error naming the file (Node's ENOSPC from write(2) names none); the errno code kept. */
function writeState(file: string, data: string): void {
  try {
    writeFileAtomic(file, data, 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw Object.assign(new Error(`cannot write ${file}: ${e.message}`), { code: e.code });
  }
}

/** The container is gone (runc state, rootfs): `delete` only has to print this DeleteResponse. */
export function writeDeleteResponse(bundle: string, response: Uint8Array): void {
  writeFileAtomic(path.join(bundle, DELETE_RESPONSE_FILE), response, 0o600);
}

export function readBundleState(bundle: string): { options: RuncOptions } {
  try {
    return { options: JSON.parse(fs.readFileSync(path.join(bundle, OPTIONS_FILE), 'utf8')) as RuncOptions };
  } catch {
    return { options: {} };
  }
}

/** True when the spec gives the container its own pid namespace (then runc kills its children with it). */
export function hasOwnPidNamespace(bundle: string): boolean {
  try {
    const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as {
      linux?: { namespaces?: Array<{ type: string; path?: string }> };
    };
    return (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'pid' && !ns.path);
  } catch {
    return true;
  }
}
