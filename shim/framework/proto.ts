// One protobufjs Root holding every definition under proto/, loaded once per process.
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

/** Root of proto/ (works from shim/ sources and from dist/shim/ output alike). */
export const PROTO_DIR = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../proto' : '../../proto');

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
  'cgroups/stats/v1/metrics.proto',
  'cgroups/stats/v2/metrics.proto',
];

let root: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.resolvePath = (_origin, target) => {
      // google/protobuf/* come bundled with protobufjs; everything else lives in proto/.
      if (target.startsWith('google/protobuf/')) return target;
      return path.isAbsolute(target) ? target : path.join(PROTO_DIR, target);
    };
    r.loadSync(PROTO_FILES, { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

export function messageType(name: string): protobuf.Type {
  return protoRoot().lookupType(name);
}

export function serviceDef(name: string): protobuf.Service {
  return protoRoot().lookupService(name);
}
