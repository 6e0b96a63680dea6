// start's stdin and stdout in each containerd's dialect (shim/framework/bootstrap.ts): containerd
// 2.3's protobuf BootstrapParams / BootstrapResult, and the runtime options Any / bare address of
// 1.6 to 2.2. Both inputs are protobuf without a marker: the shape tells them apart.
import t from 'tap';
import { logLevelName, readStartInput, startOutput, StartInputError } from '../../shim/framework/bootstrap';
import { parseFlags, type ShimFlags } from '../../shim/framework/flags';
import { messageType } from '../../shim/framework/proto';
import { SOCKET_DIR } from '../../shim/framework/socket';

/**
 * What containerd v2.3.4 wrote to start's stdin for `ctr run --runtime-config-path /tmp/m23/opts.toml`
 * (container t3, namespace m23, debug log, socket_dir /tmp/m23/sock), captured by a wrapper shim.
 */
const CAPTURED_23 = Buffer.from(
  '0a02743312036d323318fcffffffffffffffff01220676322e332e342a152f746d702f6d32332f632e736f636b2e747472' +
    '7063320f2f746d702f6d32332f632e736f636b3a1f2f746d702f637472642f76322e332e342f62696e2f636f6e7461696e' +
    '65726442330a310a1972756e74696d656f7074696f6e732e76312e4f7074696f6e73121412122f746d702f6d32332f6f70' +
    '74732e746f6d6c4a0d2f746d702f6d32332f736f636b',
  'hex',
);

function flagsFor(id: string, extra: string[] = []): ShimFlags {
  return parseFlags(['-namespace', 'ns-flag', '-address', '/flag/c.sock', '-publish-binary', '/flag/containerd', '-id', id, ...extra, 'start']);
}

function encode(type: string, obj: object): Buffer {
  const m = messageType(type);
  return Buffer.from(m.encode(m.fromObject(obj)).finish());
}

function runcOptionsAny(obj: object): { type_url: string; value: Uint8Array } {
  return { type_url: 'containerd.runc.v1.Options', value: encode('containerd.runc.v1.Options', obj) };
}

t.test('containerd 2.3 as captured: BootstrapParams, its values win over flags and environment', async (t) => {
  const flags = flagsFor('t3');
  const env: NodeJS.ProcessEnv = { TTRPC_ADDRESS: '/env/ttrpc', GRPC_ADDRESS: '/env/grpc' };
  const input = readStartInput(CAPTURED_23, flags, env);
  t.equal(input.dialect, 'bootstrap');
  t.equal(input.socketDir, '/tmp/m23/sock', 'socket_dir');
  t.equal(input.extensions.length, 1, 'one extension');
  t.equal(input.extensions[0]?.type_url, 'runtimeoptions.v1.Options', 'the runtime options, as the CRI-style Any');
  const cri = messageType('runtimeoptions.v1.Options');
  t.same(cri.toObject(cri.decode(input.extensions[0]!.value)), { config_path: '/tmp/m23/opts.toml' }, 'their value');
  t.same(
    { id: flags.id, ns: flags.namespace, address: flags.address, bin: flags.publishBinary, debug: flags.debug, level: flags.logLevel },
    { id: 't3', ns: 'm23', address: '/tmp/m23/c.sock', bin: '/tmp/ctrd/v2.3.4/bin/containerd', debug: true, level: 'debug' },
    'flags from the params',
  );
  t.same(env, { TTRPC_ADDRESS: '/tmp/m23/c.sock.ttrpc', GRPC_ADDRESS: '/tmp/m23/c.sock' }, 'environment from the params');
});

t.test('BootstrapParams without socket_dir and at info level', async (t) => {
  const flags = flagsFor('c1', ['-debug']);
  const input = readStartInput(encode('containerd.runtime.bootstrap.v1.BootstrapParams', {
    instance_id: 'c1', namespace: 'default', log_level: 0, containerd_version: 'v2.3.4', containerd_grpc_address: '/g', containerd_ttrpc_address: '/t',
    extensions: [{ value: runcOptionsAny({ binary_name: 'crun' }) }, { value: { type_url: 'containerd.io/other', value: Buffer.from([8, 1]) } }],
  }), flags, {});
  t.equal(input.dialect, 'bootstrap');
  t.equal(input.socketDir, SOCKET_DIR, 'the default socket directory');
  t.same(input.extensions.map((e) => e.type_url), ['containerd.runc.v1.Options', 'containerd.io/other'], 'every extension, in order');
  t.same([flags.logLevel, flags.debug], ['info', false], 'the level of the params, not the -debug flag');
});

t.test('a BootstrapParams with only the instance id is one when it names our id', async (t) => {
  const params = encode('containerd.runtime.bootstrap.v1.BootstrapParams', { instance_id: 'only-id' });
  t.equal(readStartInput(params, flagsFor('only-id'), {}).dialect, 'bootstrap', 'field 1 is our id');
  // The same bytes under another id read as an Any whose type URL is "only-id": not a known options type.
  const legacy = readStartInput(params, flagsFor('someone-else'), {});
  t.same(legacy, { dialect: 'legacy', extensions: [{ type_url: 'only-id', value: new Uint8Array() }], socketDir: SOCKET_DIR });
});

t.test('containerd 1.6 to 2.2: the options Any, or nothing', async (t) => {
  const flags = flagsFor('c2');
  t.same(readStartInput(Buffer.alloc(0), flags, {}), { dialect: 'legacy', extensions: [], socketDir: SOCKET_DIR }, 'no options');
  const opts = runcOptionsAny({ binary_name: 'crun', shim_cgroup: '/shims' });
  const input = readStartInput(encode('google.protobuf.Any', opts), flags, {});
  t.equal(input.dialect, 'legacy');
  t.same(input.extensions.map((e) => [e.type_url, Buffer.from(e.value).toString('hex')]), [[opts.type_url, Buffer.from(opts.value).toString('hex')]], 'the Any itself');
  t.same([flags.id, flags.namespace, flags.address, flags.logLevel], ['c2', 'ns-flag', '/flag/c.sock', ''], 'flags untouched');

  // runtimeoptions.v1.Options with a config path is valid UTF-8 in field 2, so it also parses as
  // BootstrapParams{instance_id: type URL, namespace: value}; only the shape rule keeps it an Any.
  const cri = { type_url: 'runtimeoptions.v1.Options', value: encode('runtimeoptions.v1.Options', { config_path: '/etc/runcts.toml' }) };
  const criInput = readStartInput(encode('google.protobuf.Any', cri), flagsFor('c3'), {});
  t.equal(criInput.dialect, 'legacy', 'CRI options with a printable value stay an Any');
  t.equal(criInput.extensions[0]?.type_url, 'runtimeoptions.v1.Options');
});

t.test('stdin that is neither: a clear error', async (t) => {
  for (const bytes of [Buffer.from([0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x10, 0x41]), Buffer.from('not protobuf at all, just text\n')]) {
    t.throws(() => readStartInput(bytes, flagsFor('x'), {}), StartInputError, `${bytes.toString('hex').slice(0, 16)}: StartInputError`);
  }
});

t.test('the answer per dialect', async (t) => {
  const address = 'unix:///run/containerd/s/0123abcd';
  t.equal(Buffer.from(startOutput({ dialect: 'legacy' }, address)).toString(), address, 'legacy: the bare address, nothing else');
  const result = messageType('containerd.runtime.bootstrap.v1.BootstrapResult');
  t.same(result.toObject(result.decode(startOutput({ dialect: 'bootstrap' }, address))), { version: 3, address, protocol: 'ttrpc' }, 'bootstrap: BootstrapResult, task API v3 over ttrpc');
});

t.test('log levels: the nearest known one', async (t) => {
  t.same([-12, -8, -5, -4, -1, 0, 3, 4, 7, 8, 9, 10, 12, 99].map(logLevelName),
    ['trace', 'trace', 'debug', 'debug', 'info', 'info', 'info', 'warn', 'warn', 'error', 'error', 'fatal', 'fatal', 'fatal']);
});
