// What `start` reads on stdin and what it prints, in each containerd's dialect
// (docs/shim-contract.md, "Every containerd"):
//
// - bootstrap (containerd 2.3 and later): a protobuf containerd.runtime.bootstrap.v1.BootstrapParams
//   in, a protobuf BootstrapResult out;
// - legacy (1.6 to 2.2): the runtime options as a protobuf Any (or nothing) in, the bare address
//   out. 1.7 refuses a JSON answer of version 3 and cannot be told apart from 2.0–2.2
//   (MAX_SHIM_VERSION is 2 in all of them), so the bare address is the one answer all can read.
import * as protobuf from 'protobufjs';
import type { ShimFlags } from './flags';
import { messageType } from './proto';
import { SOCKET_DIR } from './socket';

export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

export type StartDialect = 'bootstrap' | 'legacy';

export interface StartInput {
  dialect: StartDialect;
  /** Typed configuration from containerd: the runtime options are one of these (legacy: the only one). */
  extensions: AnyMessage[];
  /** Where the shim socket goes (BootstrapParams.socket_dir; else containerd's default). */
  socketDir: string;
}

/** BootstrapResult.version: task API v3 (served beside v2), as containerd 2.3's own Go shim answers. */
const BOOTSTRAP_VERSION = 3;

/** pino's level for a BootstrapParams.log_level (an open enum: the nearest known level). */
export function logLevelName(level: number): string {
  if (level <= -8) return 'trace';
  if (level <= -4) return 'debug';
  if (level < 4) return 'info';
  if (level < 8) return 'warn';
  if (level < 10) return 'error';
  return 'fatal';
}

export class StartInputError extends Error {
  override name = 'StartInputError';
}

/**
 * Read start's stdin. Both forms are protobuf and neither carries a marker, so the shape decides
 * (the Go shim of 2.3 tries BootstrapParams first, then the Any): containerd 2.3 always fills
 * fields beyond 2 (version, addresses, binary) and puts the container id, which is the -id flag,
 * in field 1; an Any has only field 1 (a type URL) and field 2 (its value). Anything else that
 * parses as BootstrapParams is taken as one only when field 1 is our id.
 *
 * A bootstrap input is the authority for identity and addresses: it overrides the flags and the
 * environment that containerd 2.3 still sets for older shims.
 */
export function readStartInput(stdin: Uint8Array, flags: ShimFlags, env: NodeJS.ProcessEnv = process.env): StartInput {
  if (stdin.length === 0) return { dialect: 'legacy', extensions: [], socketDir: SOCKET_DIR };
  const params = asBootstrapParams(stdin, flags.id);
  if (!params) {
    let any: AnyMessage;
    try {
      any = messageType('google.protobuf.Any').decode(stdin) as unknown as AnyMessage;
    } catch (err) {
      throw new StartInputError(`start: stdin is neither BootstrapParams nor a runtime options Any: ${(err as Error).message}`);
    }
    return { dialect: 'legacy', extensions: any.type_url ? [{ type_url: any.type_url, value: any.value ?? new Uint8Array() }] : [], socketDir: SOCKET_DIR };
  }
  if (params.instance_id) flags.id = params.instance_id;
  if (params.namespace) flags.namespace = params.namespace;
  if (params.containerd_grpc_address) {
    flags.address = params.containerd_grpc_address;
    env.GRPC_ADDRESS = params.containerd_grpc_address;
  }
  if (params.containerd_ttrpc_address) env.TTRPC_ADDRESS = params.containerd_ttrpc_address;
  if (params.containerd_binary) flags.publishBinary = params.containerd_binary;
  flags.logLevel = logLevelName(params.log_level ?? 0);
  flags.debug = flags.logLevel === 'debug' || flags.logLevel === 'trace';
  const extensions = (params.extensions ?? [])
    .map((e) => e.value)
    .filter((v): v is AnyMessage => !!v?.type_url)
    .map((v) => ({ type_url: v.type_url, value: v.value ?? new Uint8Array() }));
  return { dialect: 'bootstrap', extensions, socketDir: params.socket_dir || SOCKET_DIR };
}

interface BootstrapParams {
  instance_id?: string;
  namespace?: string;
  log_level?: number;
  containerd_version?: string;
  containerd_ttrpc_address?: string;
  containerd_grpc_address?: string;
  containerd_binary?: string;
  extensions?: { value?: AnyMessage | null }[];
  socket_dir?: string;
}

function asBootstrapParams(stdin: Uint8Array, id: string): BootstrapParams | undefined {
  const fields = fieldNumbers(stdin);
  if (!fields) return undefined;
  const t = messageType('containerd.runtime.bootstrap.v1.BootstrapParams');
  let params: BootstrapParams;
  try {
    params = t.toObject(t.decode(stdin), { defaults: false, enums: Number }) as BootstrapParams;
  } catch {
    return undefined;
  }
  const beyondAny = [...fields].some((n) => n > 2);
  return beyondAny || (id !== '' && params.instance_id === id) ? params : undefined;
}

/** The top-level field numbers of a protobuf message, or undefined when it does not parse. */
function fieldNumbers(buf: Uint8Array): Set<number> | undefined {
  const reader = protobuf.Reader.create(buf);
  const seen = new Set<number>();
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      if (field === 0) return undefined;
      seen.add(field);
      reader.skipType(tag & 7);
    }
  } catch {
    return undefined;
  }
  return seen;
}

/** What start prints for `address` in the dialect it was asked in. */
export function startOutput(input: Pick<StartInput, 'dialect'>, address: string): Uint8Array {
  if (input.dialect === 'legacy') return Buffer.from(address);
  const t = messageType('containerd.runtime.bootstrap.v1.BootstrapResult');
  return t.encode(t.fromObject({ version: BOOTSTRAP_VERSION, address, protocol: 'ttrpc' })).finish();
}
