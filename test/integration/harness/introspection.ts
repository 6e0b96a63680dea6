// containerd's Introspection API over @grpc/grpc-js (containerd 2.x): PluginInfo of the runtime
// plugin, which runs `<shim> -info` and answers with the shim's containerd.types.RuntimeInfo.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { Containerd, repoRoot } from './containerd';

/** The runtime plugin containerd answers PluginInfo for with a RuntimeInfo. */
export const RUNTIME_PLUGIN_TYPE = 'io.containerd.runtime.v2';
export const RUNTIME_PLUGIN_ID = 'task';
export const RUNTIME_REQUEST_TYPE = 'containerd.types.RuntimeRequest';
export const RUNTIME_INFO_TYPE = 'containerd.types.RuntimeInfo';
/** The type URL of an OCI runtime's features (JSON) in RuntimeInfo.features. */
export const OCI_FEATURES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/features/Features';

export interface AnyMessage {
  type_url: string;
  value: Buffer;
}

export interface PluginInfoResponse {
  plugin: { type: string; id: string; requires: string[]; capabilities: string[]; init_err: { code: number; message: string } | null } | null;
  extra: AnyMessage | null;
}

export interface RuntimeInfo {
  name: string;
  version: { version: string; revision: string } | null;
  options: AnyMessage | null;
  features: AnyMessage | null;
  annotations: Record<string, string>;
}

const PROTO_DIRS = (): string[] => [path.join(repoRoot(), 'test/proto'), path.join(repoRoot(), 'proto')];
let typesCache: protobuf.Root | undefined;

function types(): protobuf.Root {
  if (!typesCache) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      for (const d of PROTO_DIRS()) {
        const p = path.join(d, target);
        if (fs.existsSync(p)) return p;
      }
      return target;
    };
    typesCache = root.loadSync('containerd/types/introspection.proto', { keepCase: true });
  }
  return typesCache;
}

/** Encode a containerd.types.RuntimeRequest as the Any containerd's CRI plugin sends. */
export function runtimeRequestAny(runtimePath: string): AnyMessage {
  const T = types().lookupType(RUNTIME_REQUEST_TYPE);
  return { type_url: RUNTIME_REQUEST_TYPE, value: Buffer.from(T.encode(T.create({ runtime_path: runtimePath })).finish()) };
}

/** Decode an Any holding a containerd.types.RuntimeInfo. */
export function decodeRuntimeInfo(any: AnyMessage): RuntimeInfo {
  if (any.type_url !== RUNTIME_INFO_TYPE) throw new Error(`expected ${RUNTIME_INFO_TYPE}, got ${any.type_url}`);
  const T = types().lookupType(RUNTIME_INFO_TYPE);
  return T.toObject(T.decode(any.value), { defaults: true, longs: Number, bytes: Buffer }) as unknown as RuntimeInfo;
}

type IntrospectionClient = grpc.Client & {
  PluginInfo(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: PluginInfoResponse) => void): void;
};

/** Introspection.PluginInfo(type, id, options) on cd's grpc socket. */
export function pluginInfo(cd: Containerd, type: string, id: string, options: AnyMessage | null, timeoutMs = 30_000): Promise<PluginInfoResponse> {
  const def = protoLoader.loadSync('containerd/services/introspection/v1/introspection.proto', {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
    objects: true,
    includeDirs: PROTO_DIRS(),
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: { services: { introspection: { v1: { Introspection: grpc.ServiceClientConstructor } } } };
  };
  const client = new pkg.containerd.services.introspection.v1.Introspection(`unix://${cd.address}`, grpc.credentials.createInsecure()) as unknown as IntrospectionClient;
  const md = new grpc.Metadata();
  md.set('containerd-namespace', cd.namespace);
  return new Promise<PluginInfoResponse>((resolve, reject) => {
    client.PluginInfo({ type, id, options }, md, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) reject(new Error(`Introspection.PluginInfo(${type}, ${id}): ${grpc.status[err.code] ?? err.code}: ${err.details}`));
      else resolve(res);
    });
  });
}

/** What containerd 2.x says about runtime `runtimePath` (it runs the shim's `-info`). */
export async function runtimeInfo(cd: Containerd, runtimePath: string): Promise<{ response: PluginInfoResponse; info: RuntimeInfo }> {
  const response = await pluginInfo(cd, RUNTIME_PLUGIN_TYPE, RUNTIME_PLUGIN_ID, runtimeRequestAny(runtimePath));
  if (!response.extra) throw new Error(`PluginInfo answered without extra: ${JSON.stringify(response.plugin)}`);
  return { response, info: decodeRuntimeInfo(response.extra) };
}
