// The entry of the single bundled file (dist/runcts.js) and of the V8 startup snapshot built from
// it (dist/runcts.blob). Everything any action needs is loaded and the protobuf definitions are
// resolved here, before main: in the snapshot that work is done once at build time, and each shim
// start only deserialises the heap instead of loading and compiling ~100 modules.
import * as v8 from 'node:v8';
import * as protobuf from 'protobufjs';
import { messageType, protoRoot } from './framework/proto';
import { ttrpcTypes } from './framework/ttrpc/messages';
import { runShim } from './framework/shim';
import { RuncManager } from './runc/manager';
import { warmUp } from './snapshot-warmup';
// Loaded lazily by the actions when running unbundled; here eagerly, into the snapshot.
import './framework/logger';
import './framework/publisher';
import './framework/reaper';
import './framework/ttrpc';
import './runc/service';

warmProto(protoRoot(), (t) => messageType(t.fullName.slice(1)));
warmProto(ttrpcTypes().request.root);

/**
 * protobufjs generates each message type's encoder, decoder and converters at its first use;
 * done here they are part of the snapshot instead of the first requests of every shim (and so
 * are the cached lookups by name).
 */
function warmProto(ns: protobuf.NamespaceBase, each?: (t: protobuf.Type) => void): void {
  for (const child of ns.nestedArray) {
    if (child instanceof protobuf.Type) {
      child.setup();
      each?.(child);
    }
    if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) warmProto(child, each);
  }
}

function main(): void {
  runShim(new RuncManager()).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

if (v8.startupSnapshot?.isBuildingSnapshot()) {
  v8.startupSnapshot.setDeserializeMainFunction(main);
  // The snapshot is taken once the event loop is empty, after the warm-up.
  warmUp().catch((err: unknown) => {
    process.stderr.write(`snapshot warm-up failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  main();
}
