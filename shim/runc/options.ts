// The runtime options of a container, from the Any containerd puts in CreateTaskRequest.options:
// containerd.runc.v1.Options as ctr and the Go shim's users send it, or runtimeoptions.v1.Options
// as the CRI plugin sends it to runtime types other than runc's own: the handler's `options` table
// as TOML (in config_body, or in the file at config_path) with the same keys (BinaryName, Root,
// SystemdCgroup, ...), or containerd.linux.runc.CreateOptions as containerd 1.x clients send it.
import * as fs from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { messageType } from '../framework/proto';
import type { RuncOptions } from './bundle';
import type { CriuFlags } from './checkpoint';
import { invalidArgument } from './errors';

const RUNC_OPTIONS = 'containerd.runc.v1.Options';
const CRI_OPTIONS = 'runtimeoptions.v1.Options';
/**
 * The v1 runtime's create options: containerd 1.x clients (ctr, the Go client's WithNoPivotRoot,
 * WithShimCgroup, WithUIDOwner...) send them for every runtime not named io.containerd.runc.*.
 */
const LEGACY_CREATE_OPTIONS = 'containerd.linux.runc.CreateOptions';
const OPTION_TYPES = [RUNC_OPTIONS, CRI_OPTIONS, LEGACY_CREATE_OPTIONS];

/** Its criu flags only apply to a restore (the v1 runtime's), which runcts does not do. */
interface LegacyCreateOptions extends CriuFlags {
  no_pivot_root?: boolean;
  no_new_keyring?: boolean;
  shim_cgroup?: string;
  io_uid?: number;
  io_gid?: number;
  criu_work_path?: string;
  criu_image_path?: string;
}
const RESTORE_ONLY: (keyof CriuFlags)[] = ['open_tcp', 'external_unix_sockets', 'terminal', 'file_locks', 'empty_namespaces', 'cgroups_mode'];

function typeName(typeUrl: string): string {
  return typeUrl.replace(/^.*\//, '');
}

/**
 * The runtime options among containerd 2.3's bootstrap extensions (the first of a type we read;
 * the others are configuration for other parts); the one Any of older containerds is returned as is.
 */
export function runtimeOptionsOf<T extends { type_url: string }>(extensions: T[]): T | undefined {
  if (extensions.length === 1) return extensions[0];
  return extensions.find((e) => OPTION_TYPES.includes(typeName(e.type_url)));
}

/** TOML key (as containerd's config spells it, matched without case or underscores) -> our field. */
const TOML_KEYS: Record<string, { field: keyof RuncOptions; kind: 'string' | 'boolean' | 'number' }> = {
  nopivotroot: { field: 'no_pivot_root', kind: 'boolean' },
  nonewkeyring: { field: 'no_new_keyring', kind: 'boolean' },
  shimcgroup: { field: 'shim_cgroup', kind: 'string' },
  iouid: { field: 'io_uid', kind: 'number' },
  iogid: { field: 'io_gid', kind: 'number' },
  binaryname: { field: 'binary_name', kind: 'string' },
  root: { field: 'root', kind: 'string' },
  criupath: { field: 'criu_path', kind: 'string' },
  systemdcgroup: { field: 'systemd_cgroup', kind: 'boolean' },
  criuimagepath: { field: 'criu_image_path', kind: 'string' },
  criuworkpath: { field: 'criu_work_path', kind: 'string' },
  // runcts's own: "namespace" makes one daemon serve every container of the namespace.
  shimgrouping: { field: 'shim_grouping', kind: 'string' },
};

export const GROUPINGS = ['pod', 'namespace'] as const;

export function decodeOptions(any: { type_url?: string; value?: Uint8Array } | null | undefined): RuncOptions {
  if (!any || !any.type_url) return {};
  const name = typeName(any.type_url);
  const value = any.value ?? new Uint8Array();
  if (name === RUNC_OPTIONS) {
    const t = messageType(RUNC_OPTIONS);
    return t.toObject(t.decode(value), { defaults: false, longs: Number }) as RuncOptions;
  }
  if (name === CRI_OPTIONS) {
    const t = messageType(CRI_OPTIONS);
    const o = t.toObject(t.decode(value), { defaults: false }) as { config_path?: string; config_body?: Uint8Array };
    if (o.config_body?.length) return fromToml(Buffer.from(o.config_body).toString('utf8'), 'the runtime handler\'s options');
    if (o.config_path) {
      let text: string;
      try {
        text = fs.readFileSync(o.config_path, 'utf8');
      } catch (err) {
        throw invalidArgument(`runtime options file ${o.config_path}: ${(err as Error).message}`);
      }
      return fromToml(text, o.config_path);
    }
    return {};
  }
  if (name === LEGACY_CREATE_OPTIONS) return fromLegacyCreateOptions(value);
  throw invalidArgument(`unsupported runtime options type ${any.type_url}`);
}

/** containerd.runc.v1.Options from TOML; a wrong type or an unknown key is InvalidArgument, not silently dropped. */
export function fromToml(text: string, source: string): RuncOptions {
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(`${source} is not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(table)) {
    // containerd's own keys in the same table (the CRI plugin passes them through).
    if (/^(typeurl|configpath)$/i.test(key.replace(/_/g, ''))) continue;
    const spec = TOML_KEYS[key.replace(/_/g, '').toLowerCase()];
    if (!spec) throw invalidArgument(`${source}: unknown runtime option ${key}`);
    const actual = typeof v === 'bigint' ? 'number' : typeof v;
    if (actual !== spec.kind) throw invalidArgument(`${source}: ${key} must be a ${spec.kind}, not ${actual}`);
    out[spec.field] = typeof v === 'bigint' ? Number(v) : v;
  }
  if (out.shim_grouping !== undefined && !(GROUPINGS as readonly unknown[]).includes(out.shim_grouping)) {
    throw invalidArgument(`${source}: ShimGrouping must be one of ${GROUPINGS.join(', ')}, not ${JSON.stringify(out.shim_grouping)}`);
  }
  return out as RuncOptions;
}

/** containerd.linux.runc.CreateOptions as containerd.runc.v1.Options; a restore-only setting is refused, not dropped. */
function fromLegacyCreateOptions(value: Uint8Array): RuncOptions {
  const t = messageType(LEGACY_CREATE_OPTIONS);
  const o = t.toObject(t.decode(value), { defaults: false, longs: Number }) as LegacyCreateOptions;
  const restore = RESTORE_ONLY.filter((k) => (Array.isArray(o[k]) ? (o[k] as unknown[]).length > 0 : !!o[k]));
  if (restore.length) {
    throw invalidArgument(`${LEGACY_CREATE_OPTIONS}: ${restore.join(', ')} only apply to a restore from a checkpoint, which runcts does not support`);
  }
  const out: RuncOptions = {};
  if (o.no_pivot_root) out.no_pivot_root = true;
  if (o.no_new_keyring) out.no_new_keyring = true;
  if (o.shim_cgroup) out.shim_cgroup = o.shim_cgroup;
  if (o.io_uid) out.io_uid = o.io_uid;
  if (o.io_gid) out.io_gid = o.io_gid;
  if (o.criu_work_path) out.criu_work_path = o.criu_work_path;
  if (o.criu_image_path) out.criu_image_path = o.criu_image_path;
  return out;
}
