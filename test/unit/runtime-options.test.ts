// Runtime options as containerd sends them: containerd.runc.v1.Options (ctr, Go-shim configs) and
// runtimeoptions.v1.Options (the CRI plugin, for runtime types other than runc's own) carrying the
// handler's options table as TOML, inline (containerd >= 1.7) or in a file (containerd 1.6); the v1
// runtime's containerd.linux.runc.CreateOptions of containerd 1.x clients.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { messageType } from '../../shim/framework/proto';
import { Code, TtrpcError } from '../../shim/framework/ttrpc/codes';
import { decodeOptions, runtimeOptionsOf } from '../../shim/runc/options';

function any(type: string, obj: object) {
  const m = messageType(type);
  return { type_url: type, value: m.encode(m.fromObject(obj)).finish() };
}

function refused(t: Test, fn: () => unknown, re: RegExp): void {
  try {
    fn();
    t.fail('must be refused');
  } catch (err) {
    t.ok(err instanceof TtrpcError, 'a TtrpcError');
    t.equal((err as TtrpcError).code, Code.InvalidArgument, 'InvalidArgument');
    t.match((err as Error).message, re);
  }
}

const TABLE = `BinaryName = "/usr/bin/crun"
Root = "/run/runcts-root"
SystemdCgroup = true
NoPivotRoot = true
NoNewKeyring = false
CriuPath = "/usr/sbin/criu"
ShimCgroup = "/runcts-shims"
IoUid = 1000
IoGid = 1001
`;
const PARSED = {
  binary_name: '/usr/bin/crun', root: '/run/runcts-root', systemd_cgroup: true, no_pivot_root: true, no_new_keyring: false,
  criu_path: '/usr/sbin/criu', shim_cgroup: '/runcts-shims', io_uid: 1000, io_gid: 1001,
};

t.test('no options, or an empty Any: defaults', async (t) => {
  t.same(decodeOptions(undefined), {});
  t.same(decodeOptions(null), {});
  t.same(decodeOptions({ type_url: '', value: new Uint8Array() }), {});
});

t.test('containerd.runc.v1.Options, with or without a type URL prefix', async (t) => {
  const o = { binary_name: 'crun', root: '/r', systemd_cgroup: true, io_uid: 7 };
  t.same(decodeOptions(any('containerd.runc.v1.Options', o)), o);
  const prefixed = { ...any('containerd.runc.v1.Options', o), type_url: 'type.googleapis.com/containerd.runc.v1.Options' };
  t.same(decodeOptions(prefixed), o);
});

t.test('runtimeoptions.v1.Options with the table inline (config_body)', async (t) => {
  t.same(decodeOptions(any('runtimeoptions.v1.Options', { config_body: Buffer.from(TABLE) })), PARSED);
});

t.test('runtimeoptions.v1.Options with the table in a file (config_path), as containerd 1.6 sends it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-opts-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'runcts.toml');
  fs.writeFileSync(file, TABLE);
  t.same(decodeOptions(any('runtimeoptions.v1.Options', { type_url: 'containerd.runc.v1.Options', config_path: file })), PARSED);
  refused(t, () => decodeOptions(any('runtimeoptions.v1.Options', { config_path: path.join(dir, 'missing.toml') })), /missing\.toml.*ENOENT/);
  t.same(decodeOptions(any('runtimeoptions.v1.Options', { type_url: 'x' })), {}, 'neither body nor path: defaults');
});

t.test('keys match as containerd\'s TOML decoder matches them: any case, snake_case too; containerd\'s own keys are skipped', async (t) => {
  const body = 'binaryname = "a"\nsystemd_cgroup = true\nTypeUrl = "x"\nConfigPath = "/y"\n';
  t.same(decodeOptions(any('runtimeoptions.v1.Options', { config_body: Buffer.from(body) })), { binary_name: 'a', systemd_cgroup: true });
});

t.test('mistakes are InvalidArgument with the reason, never silently dropped', async (t) => {
  const cri = (body: string) => () => decodeOptions(any('runtimeoptions.v1.Options', { config_body: Buffer.from(body) }));
  refused(t, cri('BinaryNam = "crun"'), /unknown runtime option BinaryNam/);
  refused(t, cri('SystemdCgroup = "yes"'), /SystemdCgroup must be a boolean, not string/);
  refused(t, cri('IoUid = "0"'), /IoUid must be a number/);
  refused(t, cri('BinaryName = '), /not valid TOML/);
  refused(t, () => decodeOptions({ type_url: 'io.containerd.other.v1.Options', value: new Uint8Array() }), /unsupported runtime options type io\.containerd\.other\.v1\.Options/);
});

t.test('containerd.linux.runc.CreateOptions (containerd 1.x clients, runtimes not named io.containerd.runc.*)', async (t) => {
  const legacy = 'containerd.linux.runc.CreateOptions';
  t.same(
    decodeOptions(any(legacy, {
      no_pivot_root: true, no_new_keyring: true, shim_cgroup: '/shims', io_uid: 1000, io_gid: 1001, criu_work_path: '/w', criu_image_path: '/i',
    })),
    { no_pivot_root: true, no_new_keyring: true, shim_cgroup: '/shims', io_uid: 1000, io_gid: 1001, criu_work_path: '/w', criu_image_path: '/i' },
    'every field with a runc.v1 equivalent',
  );
  t.same(decodeOptions({ type_url: `types.containerd.io/${legacy}`, value: any(legacy, { no_pivot_root: true }).value }), { no_pivot_root: true }, 'with a type URL prefix');
  t.same(decodeOptions(any(legacy, {})), {}, 'empty');
  for (const [field, value] of [['open_tcp', true], ['terminal', true], ['file_locks', true], ['empty_namespaces', ['network']], ['cgroups_mode', 'soft'], ['external_unix_sockets', true]] as const) {
    refused(t, () => decodeOptions(any(legacy, { [field]: value })), new RegExp(`${field} only apply to a restore`));
  }
  refused(t, () => decodeOptions(any('containerd.linux.runc.RuncOptions', { runtime: 'crun' })), /unsupported runtime options type containerd.linux.runc.RuncOptions/);
});

t.test('runtimeOptionsOf: the options among containerd 2.3 bootstrap extensions', async (t) => {
  const opts = any('containerd.runc.v1.Options', { binary_name: 'crun' });
  const other = { type_url: 'containerd.io/cri.v1.PodSandboxConfig', value: new Uint8Array([1]) };
  t.equal(runtimeOptionsOf([]), undefined, 'none');
  t.equal(runtimeOptionsOf([opts]), opts, 'the only one, whatever its type (legacy: it is the options)');
  t.equal(runtimeOptionsOf([other, opts]), opts, 'the one of a known options type');
  t.equal(runtimeOptionsOf([other, other]), undefined, 'none of ours');
});
