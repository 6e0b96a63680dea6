// The one mapping from runc failures to ttrpc status codes, fed with what runc 1.1 really says, and
// the log.json reader that finds runc's last error after an offset.
//
// Every runc message below was captured from runc 1.1.5 (Debian 12) with
// `runc --log log.json --log-format json ...` against a busybox bundle; the comment names the call.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import {
  RuncError,
  alreadyExists,
  codeForRuncMessage,
  createFailure,
  failedPrecondition,
  invalidArgument,
  notFound,
  runtimeError,
  unimplemented,
} from '../../shim/runc/errors';
import { Runc, lastLoggedError, removePidFile } from '../../shim/runc/runc';
import type { Reaper } from '../../shim/framework/reaper';
import { Code, TtrpcError, codeName } from '../../shim/framework/ttrpc';

function expectCode(t: Test, msg: string, want: Code): void {
  const got = codeForRuncMessage(msg);
  t.equal(codeName(got), codeName(want), JSON.stringify(msg));
}

t.test('the container is not there: NotFound', async (t) => {
  expectCode(t, 'container does not exist', Code.NotFound); // state/kill/delete/start/pause/resume/ps of an unknown id
  expectCode(t, 'exec failed: container does not exist', Code.NotFound); // exec of an unknown id
  expectCode(t, 'container "x" does not exist', Code.NotFound); // older runc wording
  expectCode(t, 'Container Does Not Exist', Code.NotFound); // case-insensitive
});

t.test('"does not exist" of something a spec names is a failed create: Unknown, as the Go shim (not NotFound)', async (t) => {
  // runc 1.1.5, create with linux.namespaces [{type: "bogus"}]
  expectCode(t, 'runc create failed: namespace {"bogus" ""} does not exist', Code.Unknown);
  expectCode(t, 'namespace "bogus" does not exist', Code.Unknown);
  expectCode(t, 'rootfs (/x/rootfs) does not exist', Code.Unknown); // runc 1.0 wording for a missing root.path
  expectCode(t, 'runc create failed: invalid rootfs: stat /x: no such file or directory', Code.Unknown); // runc 1.1.5
  expectCode(t, 'error during container init: mount source /x does not exist', Code.Unknown);
  // the container itself, whatever comes before it in the message, is still NotFound
  expectCode(t, 'runc kill failed: container does not exist', Code.NotFound);
});

t.test('the process already finished: NotFound (as the Go shim\'s checkKillError)', async (t) => {
  expectCode(t, 'container not running', Code.NotFound); // kill of a stopped container
  expectCode(t, 'os: process already finished', Code.NotFound);
  expectCode(t, 'no such process', Code.NotFound);
  expectCode(t, 'kill: No Such Process', Code.NotFound);
});

t.test('the id is taken: AlreadyExists', async (t) => {
  expectCode(t, 'runc create failed: container with given ID already exists', Code.AlreadyExists); // runc 1.1 create twice
  expectCode(t, 'container with id exists: x', Code.AlreadyExists); // runc 1.0 and older
});

t.test('a missing executable is Unknown, as the Go shim reports it (not NotFound: the container exists)', async (t) => {
  expectCode(t, 'exec: "/nonexistent": stat /nonexistent: no such file or directory', Code.Unknown);
  expectCode(t, 'runc create failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory', Code.Unknown);
  expectCode(t, 'exec failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory', Code.Unknown);
  expectCode(t, 'runc create failed: chdir /nonexistent: no such file or directory', Code.Unknown); // create -b /nonexistent
  expectCode(t, 'something unexpected happened', Code.Unknown);
  expectCode(t, '', Code.Unknown);
});

t.test('explicit invalid-argument wording: InvalidArgument', async (t) => {
  expectCode(t, 'write /sys/fs/cgroup/cpu/x/cpu.shares: invalid argument', Code.InvalidArgument);
  expectCode(t, 'runc create failed: invalid container ID format', Code.InvalidArgument); // create with id "bad/id"
});

t.test('runc 1.1 refusing a call in the container\'s current state: FailedPrecondition', async (t) => {
  expectCode(t, 'container is paused', Code.FailedPrecondition);
  // Each of these is runc 1.1.5's exact message for the call in the comment.
  expectCode(t, 'cannot start an already running container', Code.FailedPrecondition); // start of a running container
  expectCode(t, 'cannot start a container that has stopped', Code.FailedPrecondition); // start of a stopped container
  expectCode(t, 'cannot delete container c1 that is not stopped: running', Code.FailedPrecondition); // delete (no -f) of a running one
  expectCode(t, 'exec failed: cannot exec in a paused container (use --ignore-paused to override)', Code.FailedPrecondition);
  expectCode(t, 'exec failed: cannot exec in a stopped container', Code.FailedPrecondition);
  expectCode(t, 'container not paused', Code.FailedPrecondition); // resume of a running container
  // libcontainer/error.go sentinels
  expectCode(t, 'container paused', Code.FailedPrecondition);
  expectCode(t, 'container still running', Code.FailedPrecondition);
});

t.test('runtimeError: a TtrpcError passes through untouched', async (t) => {
  const e = new TtrpcError(Code.FailedPrecondition, 'cannot start a running process');
  t.equal(runtimeError(e, 'OCI runtime start failed'), e);
});

t.test('runtimeError: a RuncError gets its code from runc\'s message and the context as prefix', async (t) => {
  const notThere = runtimeError(new RuncError('kill', 1, 'container does not exist'), 'OCI runtime kill failed');
  t.ok(notThere instanceof TtrpcError);
  t.equal(notThere.code, Code.NotFound);
  t.equal(notThere.message, 'OCI runtime kill failed: container does not exist');

  const exists = runtimeError(new RuncError('create', 1, 'runc create failed: container with given ID already exists'), 'OCI runtime create failed');
  t.equal(exists.code, Code.AlreadyExists);
  t.equal(exists.message, 'OCI runtime create failed: runc create failed: container with given ID already exists');

  const exec = runtimeError(
    new RuncError('create', 1, 'runc create failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory'),
    'OCI runtime create failed',
  );
  t.equal(exec.code, Code.Unknown);
  t.match(exec.message, /^OCI runtime create failed: .*exec: "\/nonexistent": stat \/nonexistent: no such file or directory$/);
  t.equal(String(exec), `rpc error: code = Unknown desc = ${exec.message}`);
});

t.test('runtimeError: a RuncError with nothing logged names the command and its exit status', async (t) => {
  const err = new RuncError('start', 1, '');
  t.equal(err.message, 'runc start exited with status 1');
  t.equal(err.command, 'start');
  t.equal(err.exitStatus, 1);
  const te = runtimeError(err, 'OCI runtime start failed');
  t.equal(te.code, Code.Unknown);
  t.equal(te.message, 'OCI runtime start failed: runc start exited with status 1');
});

t.test('runtimeError: errno errors and anything else', async (t) => {
  const enoent = Object.assign(new Error('spawn runc ENOENT'), { code: 'ENOENT' });
  t.same({ code: runtimeError(enoent, 'exec runc').code, message: runtimeError(enoent, 'exec runc').message }, { code: Code.NotFound, message: 'exec runc: spawn runc ENOENT' });
  const timeout = Object.assign(new Error('runc did not answer'), { code: 'ETIMEDOUT' });
  t.equal(runtimeError(timeout, 'runc state').code, Code.DeadlineExceeded);
  t.equal(runtimeError(timeout, 'runc state').message, 'runc state: runc did not answer');
  const eacces = Object.assign(new Error('permission denied'), { code: 'EACCES' });
  t.equal(runtimeError(eacces, 'x').code, Code.Unknown);
  t.equal(runtimeError(new Error('boom'), 'ctx').message, 'ctx: boom');
  t.equal(runtimeError('a string', 'ctx').code, Code.Unknown);
  t.equal(runtimeError('a string', 'ctx').message, 'ctx: a string');
  t.equal(runtimeError(undefined, 'ctx').message, 'ctx: undefined');
  t.equal(runtimeError(null, 'ctx').code, Code.Unknown);
});

t.test('createFailure: runc\'s failure, unless config.json is not JSON (InvalidArgument) or our bundle state failed too (named)', async (t) => {
  const runc = new RuncError('create', 1, 'runc create failed: invalid character \'p\' looking for beginning of object key string');
  let syntax: SyntaxError | undefined;
  try {
    JSON.parse('{"a": p');
  } catch (err) {
    syntax = err as SyntaxError;
  }
  const bad = createFailure(runc, '/b', { specError: syntax });
  t.equal(bad.code, Code.InvalidArgument);
  t.equal(bad.message, `bundle /b: config.json is not valid JSON (${syntax!.message}): OCI runtime create failed: runc create failed: invalid character 'p' looking for beginning of object key string`);

  const full = createFailure(new RuncError('create', 1, ''), '/b', {
    stateError: Object.assign(new Error('cannot write /b/options.json: ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
  });
  t.equal(full.code, Code.Unknown);
  t.equal(full.message, 'OCI runtime create failed: runc create exited with status 1 (cannot write /b/options.json: ENOSPC: no space left on device, write)');
  // the code stays runc's
  t.equal(createFailure(new RuncError('create', 1, 'container with given ID already exists'), '/b', { stateError: new Error('x') }).code, Code.AlreadyExists);

  const plain = createFailure(runc, '/b');
  t.equal(plain.code, Code.Unknown);
  t.equal(plain.message, 'OCI runtime create failed: runc create failed: invalid character \'p\' looking for beginning of object key string');
  t.equal(createFailure(new TtrpcError(Code.NotFound, 'as is'), '/b').message, 'as is');
});

t.test('the short constructors carry their code', async (t) => {
  const cases: Array<[TtrpcError, Code]> = [
    [notFound('a'), Code.NotFound],
    [alreadyExists('b'), Code.AlreadyExists],
    [failedPrecondition('c'), Code.FailedPrecondition],
    [invalidArgument('d'), Code.InvalidArgument],
    [unimplemented('e'), Code.Unimplemented],
  ];
  for (const [err, code] of cases) {
    t.ok(err instanceof TtrpcError);
    t.equal(err.code, code, codeName(code));
  }
  t.equal(notFound('container x').message, 'container x');
});

// --- lastLoggedError over runc's log.json -------------------------------------------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runcts-runc-errors-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const line = (level: string, msg: string): string => `${JSON.stringify({ level, msg, time: '2026-11-22T10:28:32Z' })}\n`;

t.test('lastLoggedError: the last error line wins; info/warning/debug lines are ignored', async (t) => {
  const log = path.join(dir, 'a.json');
  fs.writeFileSync(log, [
    line('info', 'starting'),
    line('error', 'first error'),
    line('warning', 'a warning'),
    line('error', 'runc create failed: container with given ID already exists'),
    line('info', 'after the error'),
    line('debug', 'nsexec started'),
  ].join(''));
  t.equal(lastLoggedError(log, 0), 'runc create failed: container with given ID already exists');
});

t.test('lastLoggedError: a partial last line (runc still writing, or killed) is skipped', async (t) => {
  const log = path.join(dir, 'b.json');
  fs.writeFileSync(log, line('error', 'complete error') + '{"level":"error","msg":"trunc');
  t.equal(lastLoggedError(log, 0), 'complete error');
  // foreign, non-JSON lines (runc init's stderr, a panic) are skipped too
  fs.writeFileSync(log, `${line('error', 'the real one')}panic: runtime error\n\ngoroutine 1 [running]:\n`);
  t.equal(lastLoggedError(log, 0), 'the real one');
});

t.test('lastLoggedError: only what was written after the offset counts', async (t) => {
  const log = path.join(dir, 'c.json');
  const before = line('error', 'container does not exist') + line('info', 'old');
  fs.writeFileSync(log, before);
  const offset = Buffer.byteLength(before);
  t.equal(lastLoggedError(log, offset), '', 'nothing new yet');
  fs.appendFileSync(log, line('info', 'new info only'));
  t.equal(lastLoggedError(log, offset), '', 'an old error is not this call\'s error');
  fs.appendFileSync(log, line('error', 'cannot start an already running container'));
  t.equal(lastLoggedError(log, offset), 'cannot start an already running container');
  t.equal(lastLoggedError(log, 0), 'cannot start an already running container');
  // an offset in the middle of a line: that fragment is not JSON and is ignored
  t.equal(lastLoggedError(log, 5), 'cannot start an already running container');
  const mid = Buffer.byteLength(before) - 3;
  t.equal(lastLoggedError(log, mid), 'cannot start an already running container');
});

t.test('lastLoggedError: offsets past the end, missing and empty files give ""', async (t) => {
  const log = path.join(dir, 'd.json');
  fs.writeFileSync(log, line('error', 'x'));
  t.equal(lastLoggedError(log, 1 << 20), '');
  t.equal(lastLoggedError(path.join(dir, 'missing.json'), 0), '');
  fs.writeFileSync(path.join(dir, 'empty.json'), '');
  t.equal(lastLoggedError(path.join(dir, 'empty.json'), 0), '');
  // an error entry without msg is not an error message
  fs.writeFileSync(log, line('error', 'kept') + `${JSON.stringify({ level: 'error', time: 'x' })}\n`);
  t.equal(lastLoggedError(log, 0), 'kept');
});

t.test('lastLoggedError: multi-byte text and escaped quotes survive', async (t) => {
  const log = path.join(dir, 'e.json');
  const msg = 'exec failed: unable to start container process: exec: "/bin/ünïcødé": stat /bin/ünïcødé: no such file or directory';
  const prefix = line('info', 'ärger');
  fs.writeFileSync(log, prefix + line('error', msg));
  t.equal(lastLoggedError(log, 0), msg);
  t.equal(lastLoggedError(log, Buffer.byteLength(prefix)), msg, 'offset is in bytes, not characters');
});

t.test('lastLoggedError + codeForRuncMessage over a real runc 1.1 log', async (t) => {
  // The exact lines runc 1.1.5 wrote for `create c1` twice, then `start c1` twice.
  const log = path.join(dir, 'f.json');
  fs.writeFileSync(log, '{"level":"error","msg":"runc create failed: container with given ID already exists","time":"2026-11-22T10:28:32Z"}\n');
  t.equal(codeForRuncMessage(lastLoggedError(log, 0)), Code.AlreadyExists);
  const offset = fs.statSync(log).size;
  fs.appendFileSync(log, '{"level":"error","msg":"cannot start an already running container","time":"2026-11-22T10:28:32Z"}\n');
  t.equal(lastLoggedError(log, offset), 'cannot start an already running container');
  t.equal(codeName(codeForRuncMessage(lastLoggedError(log, offset))), codeName(Code.FailedPrecondition));
});

t.test('a runtime binary that cannot be spawned: a RuncError naming it, Unknown (not NotFound from ENOENT)', async (t) => {
  const reaper = {
    spawn() {
      throw Object.assign(new Error('ENOENT: No such file or directory, posix_spawn \'/nonexistent/runc-missing\''), { code: 'ENOENT' });
    },
  } as unknown as Reaper;
  const runc = new Runc({ binary: '/nonexistent/runc-missing', root: '/run/x/ns', bundle: dir, reaper });
  const err = await runc.create('c1', { bundle: dir, pidFile: path.join(dir, 'init.pid'), stdio: [-1, -1, -1] }).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof RuncError, 'a RuncError');
  t.equal((err as RuncError).command, 'create');
  t.equal((err as Error).message, 'cannot run the runtime binary /nonexistent/runc-missing: ENOENT: No such file or directory, posix_spawn \'/nonexistent/runc-missing\'');
  const te = runtimeError(err, 'OCI runtime create failed');
  t.equal(codeName(te.code), codeName(Code.Unknown));
  t.equal(te.message, 'OCI runtime create failed: cannot run the runtime binary /nonexistent/runc-missing: ENOENT: No such file or directory, posix_spawn \'/nonexistent/runc-missing\'');
});

t.test('removePidFile: the pid file and runc\'s .<name> temporary (left by a failed write, O_EXCL for the next create)', async (t) => {
  const pid = path.join(dir, 'init.pid');
  fs.writeFileSync(pid, '1');
  fs.writeFileSync(path.join(dir, '.init.pid'), '');
  fs.writeFileSync(path.join(dir, 'other'), '');
  removePidFile(pid);
  t.notOk(fs.existsSync(pid));
  t.notOk(fs.existsSync(path.join(dir, '.init.pid')));
  t.ok(fs.existsSync(path.join(dir, 'other')), 'nothing else');
  removePidFile(pid); // nothing there: fine
  removePidFile(path.join(dir, 'no-such-dir', 'x.pid'));
});
