// The shim loads its protobuf definitions from the JSON descriptor `make` writes; it must say
// exactly what proto/ says (a stale descriptor would put wrong field numbers on the wire).
import * as fs from 'node:fs';
import t from 'tap';
import { DESCRIPTOR_FILE, parseProtoFiles, protoRoot } from '../../shim/framework/proto';

t.test('the built descriptor matches proto/ definition for definition', async (t) => {
  t.ok(fs.existsSync(DESCRIPTOR_FILE), `descriptor built at ${DESCRIPTOR_FILE}`);
  const fromDescriptor = protoRoot().toJSON();
  const fromText = parseProtoFiles().toJSON();
  t.same(fromDescriptor, fromText);
  t.ok(protoRoot().lookupType('containerd.task.v2.CreateTaskRequest').fields.bundle, 'field names kept as written (keepCase)');
});
