// The shim's command line, checked against the semantics of Go's flag package as
// containerd-shim-runc-v2 uses it (runtime/v2/shim/shim.go parseFlags: debug, v, namespace, id,
// socket, bundle, address, publish-binary; action = flag.Arg(0)).
import t, { type Test } from 'tap';
import { FlagError, daemonArgs, parseFlags, type ShimFlags } from '../../shim/framework/flags';

/** tap's t.throws(fn, Class) compares error names, and FlagError keeps the name "Error": check the class itself. */
function throwsFlagError(t: Test, fn: () => unknown, message: string, pattern?: RegExp): void {
  try {
    fn();
    t.fail(`${message}: did not throw`);
  } catch (err) {
    t.ok(err instanceof FlagError, `${message}: throws FlagError`);
    if (pattern) t.match((err as Error).message, pattern, `${message}: message`);
  }
}

const DEFAULTS: ShimFlags = {
  namespace: '', id: '', address: '', publishBinary: 'containerd', bundle: '', socket: '', debug: false, logLevel: '', version: false, info: false, action: '',
};

t.test('no arguments: Go defaults (publish-binary defaults to "containerd"), action serve', async (t) => {
  t.same(parseFlags([]), DEFAULTS);
});

t.test('the exact argv containerd 1.6 uses for start', async (t) => {
  const argv = ['-namespace', 'default', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start'];
  t.same(parseFlags(argv), {
    ...DEFAULTS,
    namespace: 'default',
    address: '/run/containerd/containerd.sock',
    publishBinary: '/usr/bin/containerd',
    id: 'abc',
    debug: true,
    action: 'start',
  });
});

t.test('the exact argv containerd 1.6 uses for delete', async (t) => {
  const argv = ['-namespace', 'default', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-bundle', '/path', 'delete'];
  t.same(parseFlags(argv), {
    ...DEFAULTS,
    namespace: 'default',
    address: '/run/containerd/containerd.sock',
    publishBinary: '/usr/bin/containerd',
    id: 'abc',
    bundle: '/path',
    action: 'delete',
  });
});

t.test('the daemon argv (no action) serves', async (t) => {
  const f = parseFlags(['-namespace', 'k8s.io', '-id', 'pod1', '-address', '/run/containerd/containerd.sock', '-socket', '/run/s/x']);
  t.equal(f.action, '');
  t.equal(f.namespace, 'k8s.io');
  t.equal(f.id, 'pod1');
  t.equal(f.socket, '/run/s/x');
  t.equal(f.debug, false);
});

t.test('-x v, --x v, -x=v and --x=v are the same', async (t) => {
  for (const argv of [['-id', 'v'], ['--id', 'v'], ['-id=v'], ['--id=v']]) {
    const f = parseFlags([...argv, 'start']);
    t.equal(f.id, 'v', argv.join(' '));
    t.equal(f.action, 'start', argv.join(' '));
  }
});

t.test('-x=v keeps everything after the first "=" (values may contain "=")', async (t) => {
  t.equal(parseFlags(['-namespace=a=b']).namespace, 'a=b');
  t.equal(parseFlags(['-id=']).id, '', 'an empty inline value is a value');
});

t.test('a string flag takes the next word as its value even when it looks like a flag', async (t) => {
  // Go: `if !hasValue && len(f.args) > 0 { value, f.args = f.args[0], f.args[1:] }`.
  const f = parseFlags(['-id', '-debug', 'start']);
  t.equal(f.id, '-debug');
  t.equal(f.debug, false);
  t.equal(f.action, 'start');
});

t.test('a repeated flag: the last one wins', async (t) => {
  t.equal(parseFlags(['-id', 'a', '-id', 'b']).id, 'b');
});

t.test('bool flags: bare, =true/=false and every strconv.ParseBool spelling', async (t) => {
  t.equal(parseFlags(['-debug']).debug, true);
  t.equal(parseFlags(['--debug']).debug, true);
  t.equal(parseFlags(['-debug=false']).debug, false);
  t.equal(parseFlags(['-debug', '-debug=false']).debug, false, 'later =false overrides');
  for (const v of ['1', 't', 'T', 'true', 'TRUE', 'True']) t.equal(parseFlags([`-debug=${v}`]).debug, true, v);
  for (const v of ['0', 'f', 'F', 'false', 'FALSE', 'False']) t.equal(parseFlags([`-debug=${v}`]).debug, false, v);
  for (const v of ['yes', 'no', 'tRuE', '', '2']) {
    throwsFlagError(t, () => parseFlags([`-debug=${v}`]), `-debug=${v} is invalid`);
  }
});

t.test('a bool flag never consumes the next word: `-debug false` makes "false" the action', async (t) => {
  const f = parseFlags(['-debug', 'false']);
  t.equal(f.debug, true);
  t.equal(f.action, 'false');
});

t.test('-v is the version flag', async (t) => {
  t.same(parseFlags(['-v']), { ...DEFAULTS, version: true });
  t.same(parseFlags(['--v']), { ...DEFAULTS, version: true });
  t.equal(parseFlags(['-v=false']).version, false);
});

t.test('the action is the first non-flag; flag parsing stops there', async (t) => {
  const f = parseFlags(['-id', 'a', 'start', '-debug', '-id', 'b']);
  t.equal(f.action, 'start');
  t.equal(f.id, 'a', 'flags after the action are not parsed');
  t.equal(f.debug, false);
});

t.test('"-" alone is a non-flag (the action)', async (t) => {
  const f = parseFlags(['-id', 'a', '-', 'start']);
  t.equal(f.action, '-');
  t.equal(f.id, 'a');
});

t.test('"--" ends the flags; the next word is the action even if it looks like a flag', async (t) => {
  t.equal(parseFlags(['-id', 'a', '--', 'delete']).action, 'delete');
  const f = parseFlags(['--', '-debug']);
  t.equal(f.action, '-debug');
  t.equal(f.debug, false);
  t.equal(parseFlags(['-debug', '--']).action, '', 'nothing after --');
});

t.test('an unknown flag is a FlagError naming it', async (t) => {
  throwsFlagError(t, () => parseFlags(['-nope', 'start']), '-nope', /provided but not defined: -nope/);
  throwsFlagError(t, () => parseFlags(['-nope=1']), '-nope=1', /nope/);
  throwsFlagError(t, () => parseFlags(['--publish_binary', 'x']), '--publish_binary');
  throwsFlagError(t, () => parseFlags(['-debug', '-ID', 'x']), 'flag names are case-sensitive');
});

t.test('bad flag syntax is a FlagError', async (t) => {
  // Go: "bad flag syntax" for ---x, -=x.
  throwsFlagError(t, () => parseFlags(['---id', 'x']), '---id');
  throwsFlagError(t, () => parseFlags(['-=x']), '-=x');
});

t.test('a string flag with no value is a FlagError', async (t) => {
  for (const name of ['namespace', 'id', 'address', 'publish-binary', 'bundle', 'socket']) {
    throwsFlagError(t, () => parseFlags([`-${name}`]), name, new RegExp(`needs an argument: -${name}$`));
    throwsFlagError(t, () => parseFlags(['-debug', `--${name}`]), `--${name}`, new RegExp(`needs an argument: -${name}$`));
  }
});

t.test('FlagError is an Error', async (t) => {
  try {
    parseFlags(['-bogus']);
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof Error);
    t.ok(err instanceof FlagError);
  }
});

t.test('an invalid bool value is a FlagError naming the value and the flag', async (t) => {
  throwsFlagError(t, () => parseFlags(['-v=maybe']), '-v=maybe', /invalid boolean value "maybe" for -v/);
});

t.test('daemonArgs keeps identity, drops the action and round-trips through parseFlags', async (t) => {
  const start = parseFlags(['-namespace', 'default', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start']);
  const args = daemonArgs(start);
  t.same(args, ['-namespace', 'default', '-id', 'abc', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-debug']);
  const again = parseFlags(args);
  t.same(again, { ...start, action: '' });

  const quiet = daemonArgs({ ...start, debug: false });
  t.notOk(quiet.includes('-debug'));
  t.equal(parseFlags(quiet).debug, false);
});

t.test('daemonArgs survives values that look like flags or are empty', async (t) => {
  const f: ShimFlags = { ...DEFAULTS, namespace: '-weird', id: '', address: '--x=y', publishBinary: 'containerd' };
  const back = parseFlags(daemonArgs(f));
  t.equal(back.namespace, '-weird');
  t.equal(back.id, '');
  t.equal(back.address, '--x=y');
  t.equal(back.action, '');
});

t.test('-info and -version, as containerd 2.x and the Go shim spell them', async (t) => {
  t.same(parseFlags(['-info']), { ...DEFAULTS, info: true }, '-info (containerd 2.x runs it with no other flag)');
  t.same(parseFlags(['--info=false']), DEFAULTS, '--info=false');
  t.same(parseFlags(['-version']), { ...DEFAULTS, version: true }, '-version like -v');
});
