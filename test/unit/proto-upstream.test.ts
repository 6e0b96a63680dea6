// proto/ must be wire-identical to the upstream definitions containerd and the cgroups library are
// built from. Debian's golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev
// install those .proto files; this test parses both sides with protobufjs and compares them message
// by message, field by field (name, number, type, label, map key, oneof, wire-relevant options),
// enum value by enum value and method by method, in both directions. If the upstream files are
// missing the test fails: a skipped comparison would prove nothing.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import * as protobuf from 'protobufjs';
import { PROTO_DIR, PROTO_FILES, protoRoot } from '../../shim/framework/proto';

const UPSTREAM_DIR = process.env.RUNCTS_UPSTREAM_PROTO_DIR ?? '/usr/share/gocode/src/github.com/containerd';

interface Pair {
  ours: string; // relative to PROTO_DIR
  upstream: string; // relative to UPSTREAM_DIR
  pkg: string;
  debPackage: string;
  /** Fields ours carries that later containerd releases added (message -> field names); left out of the comparison. */
  newerFields?: Record<string, string[]>;
}

// Every file of ours that mirrors an upstream file. Each must be complete: same set of messages,
// enums and services as its upstream file.
const PAIRS: Pair[] = [
  { ours: 'containerd/types/mount.proto', upstream: 'containerd/api/types/mount.proto', pkg: 'containerd.types', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'containerd/types/task/task.proto', upstream: 'containerd/api/types/task/task.proto', pkg: 'containerd.v1.types', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'containerd/task/v2/shim.proto', upstream: 'containerd/runtime/v2/task/shim.proto', pkg: 'containerd.task.v2', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'containerd/events/task.proto', upstream: 'containerd/api/events/task.proto', pkg: 'containerd.events', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'containerd/services/ttrpc/events/v1/events.proto', upstream: 'containerd/api/services/ttrpc/events/v1/events.proto', pkg: 'containerd.services.events.ttrpc.v1', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'containerd/runc/options/oci.proto', upstream: 'containerd/runtime/v2/runc/options/oci.proto', pkg: 'containerd.runc.v1', debPackage: 'golang-github-containerd-containerd-dev' },
  {
    ours: 'containerd/runtimeoptions/v1/api.proto', upstream: 'containerd/pkg/runtimeoptions/v1/api.proto', pkg: 'runtimeoptions.v1', debPackage: 'golang-github-containerd-containerd-dev',
    // config_body = 3 arrived in containerd 1.7; Debian's 1.6 file does not have it yet.
    newerFields: { 'runtimeoptions.v1.Options': ['config_body'] },
  },
  { ours: 'containerd/linux/runctypes/runc.proto', upstream: 'containerd/runtime/linux/runctypes/runc.proto', pkg: 'containerd.linux.runc', debPackage: 'golang-github-containerd-containerd-dev' },
  { ours: 'cgroups/stats/v1/metrics.proto', upstream: 'cgroups/stats/v1/metrics.proto', pkg: 'io.containerd.cgroups.v1', debPackage: 'golang-github-containerd-cgroups-dev' },
  { ours: 'cgroups/stats/v2/metrics.proto', upstream: 'cgroups/v2/stats/metrics.proto', pkg: 'io.containerd.cgroups.v2', debPackage: 'golang-github-containerd-cgroups-dev' },
];

// ---------------------------------------------------------------------------------------------
// Normalised descriptions of a parsed .proto file.

type Options = Record<string, unknown>;

interface FieldDesc {
  id: number;
  type: string; // scalar name, or fully qualified type name without a leading dot
  label: 'singular' | 'optional' | 'repeated' | 'required' | 'map';
  keyType: string | null; // map key type
  oneof: string | null; // name of the containing oneof (proto3 `optional` makes a synthetic one)
  options: Options; // minus gogoproto / containerd plugin options (packed, deprecated, json_name ...)
}

interface MessageDesc {
  fields: Record<string, FieldDesc>;
  oneofs: Record<string, string[]>;
  options: Options;
  reserved: unknown;
}

interface EnumDesc {
  values: Record<string, number>;
  valueOptions: Record<string, Options>;
  options: Options;
  reserved: unknown;
}

interface MethodDesc {
  requestType: string;
  responseType: string;
  requestStream: boolean;
  responseStream: boolean;
  options: Options;
}

interface ServiceDesc {
  methods: Record<string, MethodDesc>;
  options: Options;
}

interface FileDesc {
  syntax: string | null;
  package: string | null;
  imports: string[];
  weakImports: string[];
  messages: Record<string, MessageDesc>;
  enums: Record<string, EnumDesc>;
  services: Record<string, ServiceDesc>;
  optionKeys: string[]; // every option name used anywhere in the file (file options included)
}

const SCALARS = new Set([
  'double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64',
  'fixed32', 'fixed64', 'sfixed32', 'sfixed64', 'bool', 'string', 'bytes',
]);

/** Options that only change generated Go code, not the wire format. */
const FOREIGN_OPTION = /^\((gogoproto|containerd\.plugin)\./;

function wireOptions(options: Options | undefined): Options {
  const out: Options = {};
  for (const [k, v] of Object.entries(options ?? {})) if (!FOREIGN_OPTION.test(k)) out[k] = v;
  return out;
}

function bare(fullName: string): string {
  return fullName.replace(/^\./, '');
}

/**
 * Resolves a type reference as written in the file, following protobuf scoping: a leading dot
 * means fully qualified; otherwise the innermost enclosing scope that defines the name wins. A
 * name this file does not define comes from an import and is taken as fully qualified
 * (`containerd.types.Mount`, `google.protobuf.Timestamp`).
 */
function resolveTypeName(root: protobuf.Root, scope: protobuf.ReflectionObject, name: string): string {
  if (SCALARS.has(name)) return name;
  if (name.startsWith('.')) return name.slice(1);
  for (let ns: protobuf.ReflectionObject | null = scope; ns; ns = ns.parent) {
    const prefix = bare(ns.fullName);
    const candidate = prefix ? `${prefix}.${name}` : name;
    if (root.lookup(`.${candidate}`, [protobuf.Type, protobuf.Enum])) return candidate;
  }
  return name;
}

function walk(ns: protobuf.NamespaceBase, fn: (obj: protobuf.ReflectionObject) => void): void {
  for (const obj of ns.nestedArray) {
    fn(obj);
    if (obj instanceof protobuf.Namespace || obj instanceof protobuf.Type || obj instanceof protobuf.Service) walk(obj, fn);
  }
}

function describe(text: string): FileDesc {
  const parsed = protobuf.parse(text, { keepCase: true });
  const root = parsed.root;
  const syntax = /^\s*syntax\s*=\s*"([^"]+)"\s*;/m.exec(text);
  const desc: FileDesc = {
    syntax: syntax ? syntax[1]! : null,
    package: parsed.package ?? null,
    imports: parsed.imports ?? [],
    weakImports: parsed.weakImports ?? [],
    messages: {},
    enums: {},
    services: {},
    optionKeys: [],
  };
  const keys = new Set<string>();
  const noteOptions = (o: Options | undefined) => { for (const k of Object.keys(o ?? {})) keys.add(k); };
  noteOptions(root.options);
  walk(root, (obj) => {
    noteOptions(obj.options);
    const name = bare(obj.fullName);
    if (obj instanceof protobuf.Type) {
      const fields: Record<string, FieldDesc> = {};
      for (const f of obj.fieldsArray) {
        noteOptions(f.options);
        const optional = f.options?.['proto3_optional'] === true;
        fields[f.name] = {
          id: f.id,
          type: resolveTypeName(root, obj, f.type),
          label: f.map ? 'map' : f.rule === 'repeated' ? 'repeated' : f.rule === 'required' ? 'required' : optional ? 'optional' : 'singular',
          keyType: f.map ? (f as unknown as protobuf.MapField).keyType : null,
          oneof: f.partOf ? f.partOf.name : null,
          options: wireOptions(f.options),
        };
      }
      const oneofs: Record<string, string[]> = {};
      for (const o of obj.oneofsArray) {
        noteOptions(o.options);
        oneofs[o.name] = [...o.oneof].sort();
      }
      desc.messages[name] = { fields, oneofs, options: wireOptions(obj.options), reserved: obj.reserved ?? null };
    } else if (obj instanceof protobuf.Enum) {
      const valueOptions: Record<string, Options> = {};
      for (const [v, o] of Object.entries(obj.valuesOptions ?? {})) {
        noteOptions(o);
        const w = wireOptions(o);
        if (Object.keys(w).length) valueOptions[v] = w;
      }
      desc.enums[name] = { values: { ...obj.values }, valueOptions, options: wireOptions(obj.options), reserved: obj.reserved ?? null };
    } else if (obj instanceof protobuf.Service) {
      const methods: Record<string, MethodDesc> = {};
      for (const m of obj.methodsArray) {
        noteOptions(m.options);
        methods[m.name] = {
          requestType: resolveTypeName(root, obj, m.requestType),
          responseType: resolveTypeName(root, obj, m.responseType),
          requestStream: !!m.requestStream,
          responseStream: !!m.responseStream,
          options: wireOptions(m.options),
        };
      }
      desc.services[name] = { methods, options: wireOptions(obj.options) };
    }
  });
  desc.optionKeys = [...keys].sort();
  return desc;
}

// ---------------------------------------------------------------------------------------------
// The comparison. `check(actual, expected, what)` is t.strictSame in the real test and a
// collector in the self-tests below, so the very same code is shown to catch mistakes.

type Check = (actual: unknown, expected: unknown, what: string) => void;

interface Counts { messages: number; fields: number; enums: number; enumValues: number; services: number; methods: number }

function sortedKeys(o: object): string[] {
  return Object.keys(o).sort();
}

function compare(up: FileDesc, ours: FileDesc, check: Check, counts?: Counts): void {
  check(ours.package, up.package, 'package');
  check(ours.syntax, up.syntax, 'syntax');

  // Both directions at once: the same set of messages, enums and services.
  check(sortedKeys(ours.messages), sortedKeys(up.messages), 'message names');
  check(sortedKeys(ours.enums), sortedKeys(up.enums), 'enum names');
  check(sortedKeys(ours.services), sortedKeys(up.services), 'service names');

  for (const [name, um] of Object.entries(up.messages)) {
    const om = ours.messages[name];
    if (!om) continue; // reported by 'message names'
    if (counts) counts.messages++;
    check(sortedKeys(om.fields), sortedKeys(um.fields), `${name}: field names`);
    for (const [fname, uf] of Object.entries(um.fields)) {
      const of = om.fields[fname];
      if (!of) continue; // reported by 'field names'
      if (counts) counts.fields++;
      check(of, uf, `${name}.${fname}`);
    }
    check(om.oneofs, um.oneofs, `${name}: oneofs`);
    check(om.options, um.options, `${name}: message options`);
    check(om.reserved, um.reserved, `${name}: reserved`);
  }

  for (const [name, ue] of Object.entries(up.enums)) {
    const oe = ours.enums[name];
    if (!oe) continue;
    if (counts) { counts.enums++; counts.enumValues += Object.keys(ue.values).length; }
    check(oe.values, ue.values, `enum ${name}: values`);
    check(oe.valueOptions, ue.valueOptions, `enum ${name}: value options`);
    check(oe.options, ue.options, `enum ${name}: options`);
    check(oe.reserved, ue.reserved, `enum ${name}: reserved`);
  }

  for (const [name, us] of Object.entries(up.services)) {
    const os = ours.services[name];
    if (!os) continue;
    if (counts) counts.services++;
    check(sortedKeys(os.methods), sortedKeys(us.methods), `service ${name}: method names`);
    for (const [mname, um] of Object.entries(us.methods)) {
      const om = os.methods[mname];
      if (!om) continue;
      if (counts) counts.methods++;
      check(om, um, `rpc ${name}.${mname}`);
    }
    check(os.options, us.options, `service ${name}: options`);
  }
}

/** Ours must be free of gogoproto: no such imports, no such options anywhere. */
function checkClean(ours: FileDesc, check: Check): void {
  check(ours.weakImports, [], 'no weak imports');
  for (const imp of ours.imports) {
    const ok = /^google\/protobuf\/(any|timestamp|empty)\.proto$/.test(imp) || fs.existsSync(path.join(PROTO_DIR, imp));
    check(ok, true, `import "${imp}" is bundled with protobufjs or lives in proto/`);
  }
  check(ours.optionKeys.filter((k) => FOREIGN_OPTION.test(k) || k === 'go_package'), [], 'no gogoproto or go options');
}

function collect(): { check: Check; failures: string[] } {
  const failures: string[] = [];
  return {
    failures,
    check: (actual, expected, what) => { if (!isDeepStrictEqual(actual, expected)) failures.push(what); },
  };
}

function readOurs(file: string): string {
  return fs.readFileSync(path.join(PROTO_DIR, file), 'utf8');
}

function readUpstream(t: Asserter, pair: Pair): string | undefined {
  const file = path.join(UPSTREAM_DIR, pair.upstream);
  const present = fs.existsSync(file);
  t.ok(present, `upstream ${file} exists (apt-get install ${pair.debPackage})`);
  return present ? fs.readFileSync(file, 'utf8') : undefined;
}

/** The one assertion readUpstream needs (a tap Test, or a stand-in in the self-test). */
interface Asserter { ok(value: unknown, message: string): unknown }

// ---------------------------------------------------------------------------------------------

t.test('every file of ours is listed in the loader', async (t) => {
  for (const p of PAIRS) t.ok(PROTO_FILES.includes(p.ours), `PROTO_FILES lists ${p.ours}`);
});

const total: Counts = { messages: 0, fields: 0, enums: 0, enumValues: 0, services: 0, methods: 0 };

for (const pair of PAIRS) {
  t.test(`${pair.ours} matches upstream ${pair.upstream}`, async (t) => {
    const upText = readUpstream(t, pair);
    if (upText === undefined) return;
    const up = describe(upText);
    const ours = describe(readOurs(pair.ours));
    for (const [msg, names] of Object.entries(pair.newerFields ?? {})) {
      for (const name of names) {
        t.ok(ours.messages[msg]?.fields[name], `ours has the newer field ${msg}.${name}`);
        t.notOk(up.messages[msg]?.fields[name], `upstream ${pair.upstream} does not have ${msg}.${name} yet (drop it from newerFields once it does)`);
        delete ours.messages[msg]?.fields[name];
      }
    }
    t.equal(up.package, pair.pkg, 'upstream package is the one we mirror');
    t.equal(ours.syntax, 'proto3', 'ours is proto3');
    t.ok(Object.keys(up.messages).length + Object.keys(up.enums).length > 0, 'upstream defines something');
    const counts: Counts = { messages: 0, fields: 0, enums: 0, enumValues: 0, services: 0, methods: 0 };
    compare(up, ours, (a, e, what) => t.strictSame(a, e, what), counts);
    checkClean(ours, (a, e, what) => t.strictSame(a, e, what));
    for (const k of Object.keys(total) as (keyof Counts)[]) total[k] += counts[k];
    t.comment(`${pair.ours}: ${counts.messages} messages (${counts.fields} fields), ${counts.enums} enums, ${counts.services} services (${counts.methods} methods)`);
  });
}

t.test('summary', async (t) => {
  t.comment(`compared ${total.messages} messages, ${total.fields} fields, ${total.enums} enums (${total.enumValues} values), ${total.services} services, ${total.methods} methods`);
  // Lower bounds from containerd 1.6 / cgroups 1.0.4; they only guard against comparing nothing.
  t.ok(total.messages >= 70, 'compared at least 70 messages');
  t.ok(total.methods >= 18, 'compared at least 18 rpc methods');
});

// ---------------------------------------------------------------------------------------------
// Self-tests: the comparison must catch each kind of mistake. Each mutation is applied to our
// own file's text in memory and compared with the real upstream file.

interface Mutation { file: string; what: string; from: string | RegExp; to: string; expect: string }

const MUTATIONS: Mutation[] = [
  { file: 'containerd/runc/options/oci.proto', what: 'field number', from: 'string binary_name = 6;', to: 'string binary_name = 12;', expect: 'containerd.runc.v1.Options.binary_name' },
  { file: 'containerd/runc/options/oci.proto', what: 'two fields swap numbers', from: /string binary_name = 6;([\s\S]*)string root = 7;/, to: 'string binary_name = 7;$1string root = 6;', expect: 'containerd.runc.v1.Options.root' },
  { file: 'containerd/runc/options/oci.proto', what: 'scalar type', from: 'string binary_name = 6;', to: 'bytes binary_name = 6;', expect: 'containerd.runc.v1.Options.binary_name' },
  { file: 'containerd/runc/options/oci.proto', what: 'label repeated', from: 'string binary_name = 6;', to: 'repeated string binary_name = 6;', expect: 'containerd.runc.v1.Options.binary_name' },
  { file: 'containerd/runc/options/oci.proto', what: 'label optional', from: 'string binary_name = 6;', to: 'optional string binary_name = 6;', expect: 'containerd.runc.v1.Options.binary_name' },
  { file: 'containerd/runc/options/oci.proto', what: 'field renamed', from: 'string binary_name = 6;', to: 'string binary = 6;', expect: 'containerd.runc.v1.Options: field names' },
  { file: 'containerd/runc/options/oci.proto', what: 'field missing', from: /\s*string criu_work_path = 11;/, to: '', expect: 'containerd.runc.v1.Options: field names' },
  { file: 'containerd/runc/options/oci.proto', what: 'extra field', from: 'string criu_work_path = 11;', to: 'string criu_work_path = 11;\n\tstring extra = 12;', expect: 'containerd.runc.v1.Options: field names' },
  { file: 'containerd/runc/options/oci.proto', what: 'message missing', from: /message ProcessDetails \{[^}]*\}/, to: '', expect: 'message names' },
  { file: 'containerd/runc/options/oci.proto', what: 'extra message', from: 'message ProcessDetails {', to: 'message Extra {}\nmessage ProcessDetails {', expect: 'message names' },
  { file: 'containerd/runc/options/oci.proto', what: 'field in a oneof', from: 'string binary_name = 6;', to: 'oneof b { string binary_name = 6; }', expect: 'containerd.runc.v1.Options.binary_name' },
  { file: 'containerd/runc/options/oci.proto', what: 'package', from: 'package containerd.runc.v1;', to: 'package containerd.runc.v2;', expect: 'package' },
  { file: 'containerd/events/task.proto', what: 'message type', from: 'TaskIO io = 4;', to: 'TaskStart io = 4;', expect: 'containerd.events.TaskCreate.io' },
  { file: 'containerd/events/task.proto', what: 'imported type', from: 'google.protobuf.Timestamp exited_at = 5;', to: 'google.protobuf.Any exited_at = 5;', expect: 'containerd.events.TaskExit.exited_at' },
  { file: 'containerd/task/v2/shim.proto', what: 'unqualified name that does not resolve in this package', from: 'containerd.v1.types.Status status = 4;', to: 'Status status = 4;', expect: 'containerd.task.v2.StateResponse.status' },
  { file: 'containerd/task/v2/shim.proto', what: 'map key type', from: 'map<string, string> annotations = 3;', to: 'map<int32, string> annotations = 3;', expect: 'containerd.task.v2.UpdateTaskRequest.annotations' },
  { file: 'containerd/task/v2/shim.proto', what: 'map value type', from: 'map<string, string> annotations = 3;', to: 'map<string, bytes> annotations = 3;', expect: 'containerd.task.v2.UpdateTaskRequest.annotations' },
  { file: 'containerd/task/v2/shim.proto', what: 'rpc response type', from: 'rpc Kill(KillRequest) returns (google.protobuf.Empty);', to: 'rpc Kill(KillRequest) returns (StartResponse);', expect: 'rpc containerd.task.v2.Task.Kill' },
  { file: 'containerd/task/v2/shim.proto', what: 'rpc request type', from: 'rpc Kill(KillRequest)', to: 'rpc Kill(StartRequest)', expect: 'rpc containerd.task.v2.Task.Kill' },
  { file: 'containerd/task/v2/shim.proto', what: 'rpc streaming', from: 'returns (WaitResponse);', to: 'returns (stream WaitResponse);', expect: 'rpc containerd.task.v2.Task.Wait' },
  { file: 'containerd/task/v2/shim.proto', what: 'rpc missing', from: /\s*rpc Shutdown\([^;]*;/, to: '', expect: 'service containerd.task.v2.Task: method names' },
  { file: 'containerd/task/v2/shim.proto', what: 'service renamed', from: 'service Task {', to: 'service Tasks {', expect: 'service names' },
  { file: 'containerd/types/task/task.proto', what: 'enum value number', from: 'PAUSING = 5;', to: 'PAUSING = 6;', expect: 'enum containerd.v1.types.Status: values' },
  { file: 'containerd/types/task/task.proto', what: 'enum value missing', from: /\s*PAUSING = 5;/, to: '', expect: 'enum containerd.v1.types.Status: values' },
  { file: 'containerd/types/task/task.proto', what: 'enum missing', from: /enum Status \{[^}]*\}/, to: '', expect: 'enum names' },
  { file: 'cgroups/stats/v1/metrics.proto', what: 'packed option', from: 'repeated uint64 per_cpu = 4;', to: 'repeated uint64 per_cpu = 4 [packed = false];', expect: 'io.containerd.cgroups.v1.CPUUsage.per_cpu' },
  { file: 'cgroups/stats/v2/metrics.proto', what: 'uint64 vs int64', from: 'uint64 oom_kill = 5;', to: 'int64 oom_kill = 5;', expect: 'io.containerd.cgroups.v2.MemoryEvents.oom_kill' },
  { file: 'cgroups/stats/v2/metrics.proto', what: 'syntax', from: 'syntax = "proto3";', to: 'edition = "2023";', expect: 'syntax' },
];

function mutate(text: string, m: Mutation): string {
  const out = text.replace(m.from as RegExp, m.to);
  if (out === text) throw new Error(`mutation "${m.what}" did not apply to ${m.file}`);
  return out;
}

t.test('self-test: the comparison catches mistakes in our files', async (t) => {
  for (const m of MUTATIONS) {
    const pair = PAIRS.find((p) => p.ours === m.file)!;
    const upText = readUpstream(t, pair);
    if (upText === undefined) continue;
    const up = describe(upText);
    const clean = collect();
    compare(up, describe(readOurs(m.file)), clean.check);
    t.strictSame(clean.failures, [], `${m.file} as committed matches (control for "${m.what}")`);
    const bad = collect();
    compare(up, describe(mutate(readOurs(m.file), m)), bad.check);
    t.ok(bad.failures.includes(m.expect), `${m.what}: reported as "${m.expect}" (got ${JSON.stringify(bad.failures)})`);
  }
});

t.test('self-test: equivalent spellings of a type name are accepted', async (t) => {
  const pair = PAIRS.find((p) => p.ours === 'containerd/types/task/task.proto')!;
  const upText = readUpstream(t, pair);
  if (upText === undefined) return;
  const up = describe(upText);
  for (const spelling of ['containerd.v1.types.Status', '.containerd.v1.types.Status', 'types.Status', 'v1.types.Status']) {
    const c = collect();
    compare(up, describe(readOurs(pair.ours).replace('Status status = 4;', `${spelling} status = 4;`)), c.check);
    t.strictSame(c.failures, [], `"${spelling}" is the same type as "Status" in package containerd.v1.types`);
  }
  // ... and a relative name that resolves elsewhere is not.
  const c = collect();
  compare(up, describe(readOurs(pair.ours).replace('message Process {', 'message Process {\n\tenum Status { X = 0; }')), c.check);
  t.ok(c.failures.includes('containerd.v1.types.Process.status'), 'a nested Status shadows the package one');
});

t.test('self-test: gogoproto in our files is refused', async (t) => {
  const text = readOurs('containerd/types/mount.proto');
  for (const [what, bad] of [
    ['gogoproto import', text.replace('package containerd.types;', 'package containerd.types;\nimport "gogoproto/gogo.proto";')],
    ['weak import', text.replace('package containerd.types;', 'package containerd.types;\nimport weak "gogoproto/gogo.proto";')],
    ['gogoproto field option', text.replace('string target = 3;', 'string target = 3 [(gogoproto.customname) = "Target"];')],
    ['go_package', text.replace('package containerd.types;', 'package containerd.types;\noption go_package = "x";')],
  ] as const) {
    t.not(bad, text, `${what}: mutation applies`);
    const c = collect();
    checkClean(describe(bad), c.check);
    t.ok(c.failures.length > 0, `${what} is refused (${JSON.stringify(c.failures)})`);
  }
  const c = collect();
  checkClean(describe(text), c.check);
  t.strictSame(c.failures, [], 'the committed file is clean');
});

t.test('self-test: a missing upstream file fails', async (t) => {
  const inner: string[] = [];
  const fake = { ok: (v: unknown, what: string) => { if (!v) inner.push(what); } };
  const text = readUpstream(fake, { ...PAIRS[0]!, upstream: 'containerd/api/types/no-such-file.proto' });
  t.equal(text, undefined, 'nothing read');
  t.equal(inner.length, 1, 'reported as a failed assertion, not a skip');
});

// ---------------------------------------------------------------------------------------------
// Our files load together and round-trip what the shim sends and receives.

function loadOurs(): protobuf.Root {
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    if (target.startsWith('google/protobuf/')) return target; // bundled with protobufjs
    return path.isAbsolute(target) ? target : path.join(PROTO_DIR, target);
  };
  r.loadSync(PAIRS.map((p) => p.ours), { keepCase: true });
  r.resolveAll();
  return r;
}

/** Field numbers of the top-level fields present on the wire, in order. */
function wireFieldNumbers(buf: Uint8Array): number[] {
  const reader = protobuf.Reader.create(buf);
  const ids: number[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    ids.push(tag >>> 3);
    reader.skipType(tag & 7);
  }
  return ids;
}

const EVENT_TYPE_URLS: Record<string, string> = {
  '/tasks/create': 'containerd.events.TaskCreate',
  '/tasks/start': 'containerd.events.TaskStart',
  '/tasks/delete': 'containerd.events.TaskDelete',
  '/tasks/exit': 'containerd.events.TaskExit',
  '/tasks/oom': 'containerd.events.TaskOOM',
  '/tasks/exec-added': 'containerd.events.TaskExecAdded',
  '/tasks/exec-started': 'containerd.events.TaskExecStarted',
  '/tasks/paused': 'containerd.events.TaskPaused',
  '/tasks/resumed': 'containerd.events.TaskResumed',
  '/tasks/checkpointed': 'containerd.events.TaskCheckpointed',
};

t.test('our files load and resolve together', async (t) => {
  const root = loadOurs();
  const task = root.lookupService('containerd.task.v2.Task');
  t.equal(task.methodsArray.length, 17, 'Task has 17 methods');
  for (const m of task.methodsArray) {
    t.ok(m.resolvedRequestType && m.resolvedResponseType, `Task.${m.name} types resolve`);
  }
  const fwd = root.lookupService('containerd.services.events.ttrpc.v1.Events').methods['Forward'];
  t.equal(fwd?.resolvedRequestType?.fullName, '.containerd.services.events.ttrpc.v1.ForwardRequest', 'Events.Forward request');
  t.equal(fwd?.resolvedResponseType?.fullName, '.google.protobuf.Empty', 'Events.Forward response');
  const state = root.lookupType('containerd.task.v2.StateResponse');
  t.equal(state.fields['status']?.resolvedType?.fullName, '.containerd.v1.types.Status', 'StateResponse.status is the Status enum');
  t.equal(state.fields['exited_at']?.resolvedType?.fullName, '.google.protobuf.Timestamp', 'exited_at is a Timestamp');
});

t.test('type URLs we publish and accept resolve', async (t) => {
  const root = loadOurs();
  const urls = [
    ...Object.values(EVENT_TYPE_URLS),
    'containerd.events.TaskIO',
    'containerd.runc.v1.Options',
    'containerd.runc.v1.CheckpointOptions',
    'containerd.runc.v1.ProcessDetails',
    'io.containerd.cgroups.v1.Metrics',
    'io.containerd.cgroups.v2.Metrics',
  ];
  for (const url of urls) {
    t.equal(root.lookupType(url).fullName, `.${url}`, `${url} resolves`);
  }
  t.throws(() => root.lookupType('containerd.events.TaskExited'), 'an unknown name does not resolve');
});

t.test('round trip: CreateTaskRequest with runc Options in an Any', async (t) => {
  const root = loadOurs();
  const Options = root.lookupType('containerd.runc.v1.Options');
  const CreateTaskRequest = root.lookupType('containerd.task.v2.CreateTaskRequest');

  const optBytes = Options.encode(Options.fromObject({ binary_name: 'runc', root: '/run/containerd/runc' })).finish();
  // Hand-encoded: field 6 (binary_name) and field 7 (root), both length-delimited.
  t.strictSame(
    Buffer.from(optBytes),
    Buffer.concat([Buffer.from([6 << 3 | 2, 4]), Buffer.from('runc'), Buffer.from([7 << 3 | 2, 20]), Buffer.from('/run/containerd/runc')]),
    'Options wire bytes',
  );

  const req = {
    id: 'c1',
    bundle: '/run/containerd/io.containerd.runtime.v2.task/default/c1',
    rootfs: [{ type: 'overlay', source: 'overlay', options: ['lowerdir=/l', 'upperdir=/u', 'workdir=/w'] }],
    stdout: '/run/containerd/fifo/c1-stdout',
    options: { type_url: 'containerd.runc.v1.Options', value: optBytes },
  };
  const bytes = CreateTaskRequest.encode(CreateTaskRequest.fromObject(req)).finish();
  t.strictSame(wireFieldNumbers(bytes), [1, 2, 3, 6, 10], 'field numbers on the wire');

  const decoded = CreateTaskRequest.decode(bytes);
  const obj = CreateTaskRequest.toObject(decoded, { bytes: Buffer }) as {
    id: string; bundle: string; stdout: string; rootfs: { type: string; source: string; options: string[] }[];
    options: { type_url: string; value: Buffer };
  };
  t.equal(obj.id, 'c1');
  t.equal(obj.bundle, req.bundle);
  t.equal(obj.stdout, req.stdout);
  t.strictSame(obj.rootfs, req.rootfs, 'rootfs mounts');
  t.equal(obj.options.type_url, 'containerd.runc.v1.Options');
  const inner = root.lookupType(obj.options.type_url);
  t.strictSame(inner.toObject(inner.decode(obj.options.value)), { binary_name: 'runc', root: '/run/containerd/runc' }, 'options decoded through the type URL');
  t.strictSame(Buffer.from(CreateTaskRequest.encode(decoded).finish()), Buffer.from(bytes), 're-encodes to the same bytes');
});

t.test('round trip: TaskExit with a Timestamp in a forwarded Envelope', async (t) => {
  const root = loadOurs();
  const TaskExit = root.lookupType('containerd.events.TaskExit');
  const ForwardRequest = root.lookupType('containerd.services.events.ttrpc.v1.ForwardRequest');

  const exit = { container_id: 'c1', id: 'exec1', pid: 4242, exit_status: 137, exited_at: { seconds: 1700000000, nanos: 123456789 } };
  const exitBytes = TaskExit.encode(TaskExit.fromObject(exit)).finish();
  t.strictSame(wireFieldNumbers(exitBytes), [1, 2, 3, 4, 5], 'TaskExit field numbers on the wire');
  t.strictSame(TaskExit.toObject(TaskExit.decode(exitBytes), { longs: Number }), exit, 'TaskExit round trip');

  const fwd = {
    envelope: {
      timestamp: { seconds: 1700000001, nanos: 5 },
      namespace: 'k8s.io',
      topic: '/tasks/exit',
      event: { type_url: EVENT_TYPE_URLS['/tasks/exit']!, value: Buffer.from(exitBytes) },
    },
  };
  const bytes = ForwardRequest.encode(ForwardRequest.fromObject(fwd)).finish();
  const back = ForwardRequest.toObject(ForwardRequest.decode(bytes), { longs: Number, bytes: Buffer }) as typeof fwd;
  t.strictSame(back, fwd, 'ForwardRequest round trip');
  const ev = root.lookupType(back.envelope.event.type_url);
  t.equal(ev, TaskExit, 'the envelope type URL resolves to TaskExit');
  t.strictSame(ev.toObject(ev.decode(back.envelope.event.value), { longs: Number }), exit, 'event decoded through the type URL');
});

t.test('protoRoot() loads once the other protos exist', async (t) => {
  const others = PROTO_FILES.filter((f) => !PAIRS.some((p) => p.ours === f));
  const missing = others.filter((f) => !fs.existsSync(path.join(PROTO_DIR, f)));
  if (missing.length) {
    t.plan(0, `not all of proto/ is written yet: ${missing.join(', ')}`);
    return;
  }
  const root = protoRoot();
  for (const p of PAIRS) t.ok(root.lookup(p.pkg), `${p.pkg} is in protoRoot()`);
  t.ok(root.lookupType('containerd.task.v2.CreateTaskRequest'), 'CreateTaskRequest via protoRoot()');
});
