// One protobufjs Root holding every definition under proto/, loaded once per process.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { installRoot } from './install-root';

/** Root of proto/. */
export const PROTO_DIR = path.join(installRoot(), 'proto');

/** Every file the shim and its tests use, relative to PROTO_DIR. */
export const PROTO_FILES = [
  'google/rpc/status.proto',
  'ttrpc/ttrpc.proto',
  'containerd/types/mount.proto',
  'containerd/types/task/task.proto',
  'containerd/task/v2/shim.proto',
  'containerd/events/task.proto',
  'containerd/services/ttrpc/events/v1/events.proto',
  'containerd/runc/options/oci.proto',
  'containerd/runtimeoptions/v1/api.proto',
  'containerd/linux/runctypes/runc.proto',
  'containerd/types/introspection.proto',
  'containerd/runtime/bootstrap/v1/bootstrap.proto',
  'cgroups/stats/v1/metrics.proto',
  'cgroups/stats/v2/metrics.proto',
];

/**
 * The same definitions as one JSON descriptor, written by `make` next to the compiled code:
 * loading it is several times cheaper than parsing the .proto text, and every shim start pays it.
 */
export const DESCRIPTOR_FILE = path.join(PROTO_DIR, '..', 'dist', 'proto-descriptor.json');

let root: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  if (!root) root = loadDescriptor() ?? parseProtoFiles();
  return root;
}

function loadDescriptor(): protobuf.Root | undefined {
  let json: string;
  try {
    json = fs.readFileSync(DESCRIPTOR_FILE, 'utf8');
  } catch {
    return undefined;
  }
  const r = protobuf.Root.fromJSON(JSON.parse(json));
  r.resolveAll();
  return r;
}

/** Parse proto/ itself (tests, and the build step that writes the descriptor). */
export function parseProtoFiles(): protobuf.Root {
  {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => {
      // google/protobuf/* come bundled with protobufjs; everything else lives in proto/.
      if (target.startsWith('google/protobuf/')) return target;
      return path.isAbsolute(target) ? target : path.join(PROTO_DIR, target);
    };
    r.loadSync(PROTO_FILES, { keepCase: true });
    r.resolveAll();
    return r;
  }
}

/** `node dist/shim/framework/proto.js --write-descriptor`: the build step behind DESCRIPTOR_FILE. */
if (typeof module !== 'undefined' && require.main === module && process.argv[2] === '--write-descriptor') {
  fs.writeFileSync(DESCRIPTOR_FILE, JSON.stringify(parseProtoFiles().toJSON()));
}

const typeCache = new Map<string, protobuf.Type>();

/** A message type by full name (looked up once: a lookup walks the whole namespace tree). */
export function messageType(name: string): protobuf.Type {
  let t = typeCache.get(name);
  if (!t) {
    t = protoRoot().lookupType(name);
    typeCache.set(name, t);
  }
  return t;
}

export function serviceDef(name: string): protobuf.Service {
  return protoRoot().lookupService(name);
}
