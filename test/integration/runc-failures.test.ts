// Reliability, faults: the runtime failing (a BinaryName that does not exist, a bundle that does not
// exist or whose config.json is not JSON, a spec runc rejects, a command that does not exist) and the
// bundle's filesystem failing (full, read-only). Each case asserts the exact ttrpc status code, a
// message naming the cause, and that nothing is left behind: no runc state under the Root, no
// rootfs mount, no container (or runc) process under the shim, no cgroup, only the bundle files a
// later cleanup removes (listed), the id reusable once the cause is fixed, and the same shim still
// serving a good container (it did not wedge). The shim is driven directly (harness/direct.ts).
//
// Codes, compared with containerd's Go shim (containerd 1.6 pkg/process/init.go runtimeError and
// runtime/v2/runc/container.go NewContainer, errors through errdefs.ToGRPC): every failure of
// `runc create` is a plain error there, hence Unknown, with the message "OCI runtime create failed:
// <runc's last log.json error>". runcts answers the same for runc's own failures; where it answers
// differently the case says why (a bundle without config.json, or with one that is not JSON, is
// InvalidArgument: the caller's input, as the shim tells; a full or read-only bundle names the file
// our own write failed on, since runc could log nothing there).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { Code } from '../../shim/framework/ttrpc';
import {
  DIRECT_NS, DirectShims, SHIM, STATUS, connectShim, encodeAny, expectStatus, optionsAny, run, waitGone, type DirectShim,
} from './harness';

let shims: DirectShims;
t.before(async () => {
  // Registered first, so it runs before DirectShims' teardown removes the directory: a failed case may leave a container.
  t.teardown(async () => {
    const state = path.join(runcRoot(), DIRECT_NS);
    for (const id of fs.existsSync(state) ? fs.readdirSync(state) : []) await run('runc', ['--root', state, 'delete', '--force', id]);
    // and no mount may be left for DirectShims' recursive rm to walk into (a rootfs is a bind of the fixture)
    for (const m of mountsUnder(shims.root).reverse()) await run('umount', ['-l', m]);
  });
  shims = await DirectShims.create(t);
});

const MISSING_RUNC = '/nonexistent/runc-missing';
/** The Root every case gives runc (Create's options), so its state dirs are this file's alone. */
const runcRoot = () => path.join(shims.root, 'runc-root');
const goodOptions = (binary = 'runc') => optionsAny({ binary_name: binary, root: runcRoot() });

interface Served { shim: DirectShim; events: ReturnType<DirectShims['events']> }

/** A shim of its own for one test, started in a bundle of its own (never the one a case breaks). */
async function serve(t: Test, name: string, stdin: Buffer = encodeAny(goodOptions())): Promise<Served> {
  const events = shims.events(name);
  await events.listen();
  t.teardown(() => events.close());
  const home = shims.bundle(`home-${name}`, ['true']);
  const started = await shims.start(home, `home-${name}`, events.socket, stdin);
  t.equal(started.code, 0, `start exits 0 (${started.stderr})`);
  const shim = await connectShim(started.stdout);
  t.teardown(() => shim.client.close());
  return { shim, events };
}

/** Shutdown with no container left: the shim exits (it did not hang on the failure). */
async function shutdown(t: Test, shim: DirectShim): Promise<void> {
  await shim.call('Shutdown', { id: '', now: false });
  t.ok(await waitGone(shim.pid), 'the shim exits on Shutdown once nothing is left');
}

/** Every pid below `pid` (children of all its threads, recursively). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    let children = '';
    try {
      children = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch { /* gone */ }
    for (const c of children.split(' ').filter(Boolean).map(Number)) out.push(c, ...descendants(c));
  }
  return out;
}

function argvOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '?';
  }
}

/** Mount points at or below dir, from /proc/self/mountinfo (field 5). */
function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\040/g, ' '))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`));
}

/** The v1 controllers' directories a container `id` would have (runc's default cgroupsPath is /<id>). */
function cgroupDirs(id: string): string[] {
  const root = '/sys/fs/cgroup';
  return fs.readdirSync(root).map((c) => path.join(root, c, id)).filter((d) => fs.existsSync(d));
}

interface LeakCheck {
  shim: DirectShim;
  id: string;
  bundle: string;
  /** The bundle's listing a later cleanup (containerd's bundle removal, or our Delete) deals with. */
  files: string[];
  /** Mount points under the bundle that are the test's own (its tmpfs, its read-only bind). */
  ownMounts?: string[];
}

/** Nothing of the failed Create of `id` is left; the bundle holds exactly `files`. */
async function assertNothingOf(t: Test, c: LeakCheck): Promise<void> {
  t.notOk(fs.existsSync(path.join(runcRoot(), DIRECT_NS, c.id)), `no runc state dir ${path.join(runcRoot(), DIRECT_NS, c.id)}`);
  t.same(mountsUnder(c.bundle).filter((m) => !(c.ownMounts ?? []).includes(m)), [], 'no rootfs mount left');
  // runc (and runc init) are the shim's children; after a failure none may be left, not even a zombie.
  let left = descendants(c.shim.pid);
  for (let i = 0; i < 50 && left.length; i++) {
    await new Promise((r) => setTimeout(r, 20));
    left = descendants(c.shim.pid);
  }
  t.same(left.map((p) => `${p} ${argvOf(p)}`), [], 'no process left under the shim');
  t.same(cgroupDirs(c.id), [], 'no cgroup left');
  t.same(fs.existsSync(c.bundle) ? fs.readdirSync(c.bundle).sort() : [], [...c.files].sort(), `bundle files: ${c.files.join(', ') || 'none'}`);
  await expectStatus(t, c.shim.call('State', { id: c.id, exec_id: '' }), Code.NotFound, 'the shim keeps nothing of it');
}

/** A full lifecycle of `id` in `bundle` through the same shim: the id is reusable and the shim serves. */
async function lifecycle(t: Test, s: Served, id: string, bundle: string, extra: object = { options: goodOptions() }, expectExit = 0): Promise<void> {
  const created = await s.shim.call('Create', shims.createReq(id, bundle, extra));
  t.ok(created.pid > 0, `Create of ${id} succeeds (pid ${created.pid})`);
  t.ok(fs.existsSync(path.join(runcRoot(), DIRECT_NS, id)), 'runc state under the Root while it exists');
  t.ok(cgroupDirs(id).length > 0, 'the container has its cgroup /<id> while it exists (the cgroup check can see one)');
  await s.shim.call('Start', { id, exec_id: '' });
  const w = await s.shim.call('Wait', { id, exec_id: '' });
  t.equal(w.exit_status, expectExit, `exit status ${expectExit}`);
  await s.shim.call('Delete', { id, exec_id: '' });
  t.notOk(fs.existsSync(path.join(runcRoot(), DIRECT_NS, id)), 'runc state gone after Delete');
  t.same(mountsUnder(path.join(bundle, 'rootfs')), [], 'rootfs unmounted after Delete');
  t.same(cgroupDirs(id), [], 'cgroup gone after Delete');
}

/** A copy of a fresh busybox bundle's config.json and log in `dir` (for bundles on a filesystem of the test's own). */
function bundleIn(dir: string, id: string, args: string[]): string {
  const src = shims.bundle(id, args);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'log']) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  return dir;
}

function editSpec(bundle: string, edit: (spec: Record<string, any>) => void): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  const file = path.join(bundle, 'config.json');
  const spec = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(spec);
  fs.writeFileSync(file, JSON.stringify(spec));
}

/** Files a failed Create leaves in the bundle: ours (rootfs dir, options.json, runtime) and runc's log.json. */
const LEFT_AFTER_FAILED_CREATE = ['config.json', 'log', 'log.json', 'options.json', 'rootfs', 'runtime'];

t.test('BinaryName naming a missing binary', async (t) => {
  // start's options name it too: start reads only what places the daemon (ShimCgroup, grouping), as the
  // Go shim's StartShim does, so it starts; containerd gives Create the same options.
  const s = await serve(t, 'missing-bin', encodeAny(optionsAny({ binary_name: MISSING_RUNC, root: runcRoot() })));
  const id = 'missing-bin';
  const bundle = shims.bundle(id, ['true']);
  const err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: optionsAny({ binary_name: MISSING_RUNC, root: runcRoot() }) })),
    Code.Unknown, 'Create with BinaryName=/nonexistent/runc-missing');
  t.equal(err?.message, `OCI runtime create failed: cannot run the runtime binary ${MISSING_RUNC}: ENOENT: No such file or directory, posix_spawn '${MISSING_RUNC}'`, 'the message names the missing binary');
  // runc never ran: no log.json.
  await assertNothingOf(t, { shim: s.shim, id, bundle, files: LEFT_AFTER_FAILED_CREATE.filter((f) => f !== 'log.json') });
  await lifecycle(t, s, id, bundle);
  t.ok(s.events.for(id).every((e) => e.topic !== '/tasks/create' || e.event.pid > 0), 'no /tasks/create for the failed Create');
  t.equal(s.events.for(id).filter((e) => e.topic === '/tasks/create').length, 1, 'one /tasks/create: the good one');
  await shutdown(t, s.shim);
});

t.test('a bundle that does not exist; a config.json that is not JSON', async (t) => {
  const s = await serve(t, 'bad-bundle');
  // Not there at all (shim-direct checks the code; here: nothing is made at that path, and a relative path).
  const nowhere = path.join(shims.root, 'no-such-dir', 'bundle');
  let err = await expectStatus(t, s.shim.call('Create', shims.createReq('nowhere', nowhere, { options: goodOptions() })), Code.InvalidArgument, 'Create in a bundle path that does not exist');
  t.match(err?.message, `bundle ${nowhere} has no config.json`, 'names the bundle');
  t.notOk(fs.existsSync(path.dirname(nowhere)), 'nothing created at that path');
  await assertNothingOf(t, { shim: s.shim, id: 'nowhere', bundle: nowhere, files: [] });
  err = await expectStatus(t, s.shim.call('Create', shims.createReq('relative', 'relative/bundle', { options: goodOptions() })), Code.InvalidArgument, 'Create with a relative bundle path');
  t.match(err?.message, /relative\/bundle/, 'names it');

  const id = 'not-json';
  const bundle = shims.bundle(id, ['true']);
  const good = fs.readFileSync(path.join(bundle, 'config.json'), 'utf8');
  fs.writeFileSync(path.join(bundle, 'config.json'), '{"ociVersion": "1.0.2", process: oops');
  // InvalidArgument, as a missing config.json; the Go shim passes runc's bare message on as Unknown.
  err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: goodOptions() })), Code.InvalidArgument, 'Create with a config.json that is not JSON');
  t.match(err?.message, new RegExp(`^bundle ${bundle}: config\\.json is not valid JSON \\(.+\\): OCI runtime create failed: runc create failed: invalid character 'p' looking for beginning of object key string$`),
    'names config.json, the JSON error (ours and runc\'s)');
  await assertNothingOf(t, { shim: s.shim, id, bundle, files: LEFT_AFTER_FAILED_CREATE });
  fs.writeFileSync(path.join(bundle, 'config.json'), good);
  await lifecycle(t, s, id, bundle);
  await shutdown(t, s.shim);
});

t.test('a spec runc rejects: an unknown namespace type, a rootfs that does not exist', async (t) => {
  const s = await serve(t, 'bad-spec');
  const id = 'bogus-ns';
  const bundle = shims.bundle(id, ['true']);
  editSpec(bundle, (spec) => spec.linux.namespaces.push({ type: 'bogus' }));
  let err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: goodOptions() })), Code.Unknown, 'Create with namespace type "bogus"');
  // The Go shim: Unknown, the same message. runcts said NotFound here before (any "does not exist" was).
  t.equal(err?.message, 'OCI runtime create failed: runc create failed: namespace {"bogus" ""} does not exist', 'runc\'s own message names the namespace');
  await assertNothingOf(t, { shim: s.shim, id, bundle, files: LEFT_AFTER_FAILED_CREATE });
  editSpec(bundle, (spec) => { spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'bogus'); });
  await lifecycle(t, s, id, bundle);

  const id2 = 'no-rootfs';
  const bundle2 = shims.bundle(id2, ['true']);
  editSpec(bundle2, (spec) => { spec.root.path = path.join(shims.root, 'no-such-rootfs'); });
  err = await expectStatus(t, s.shim.call('Create', shims.createReq(id2, bundle2, { options: goodOptions(), rootfs: [] })), Code.Unknown, 'Create with a root.path that does not exist and no rootfs mounts');
  t.equal(err?.message, `OCI runtime create failed: runc create failed: invalid rootfs: stat ${path.join(shims.root, 'no-such-rootfs')}: no such file or directory`, 'runc\'s own message names the rootfs');
  // No rootfs mounts in the request: the shim makes no rootfs dir (and has nothing to unmount).
  await assertNothingOf(t, { shim: s.shim, id: id2, bundle: bundle2, files: LEFT_AFTER_FAILED_CREATE.filter((f) => f !== 'rootfs') });
  editSpec(bundle2, (spec) => { spec.root.path = 'rootfs'; });
  await lifecycle(t, s, id2, bundle2);
  await shutdown(t, s.shim);
});

t.test('a command that does not exist', async (t) => {
  // shim-direct asserts runc's message and that State is NotFound; here: the code, what is left, the id reused.
  const s = await serve(t, 'no-cmd');
  // (crun would be the other runtime to ask, but refuses this hybrid-cgroup host: see shim-direct.)
  const id = 'no-cmd';
  const bundle = shims.bundle(id, ['/does-not-exist', 'arg']);
  const err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: goodOptions() })), Code.Unknown, 'Create of /does-not-exist');
  t.equal(err?.message, 'OCI runtime create failed: runc create failed: unable to start container process: exec: "/does-not-exist": stat /does-not-exist: no such file or directory',
    'runc 1.1 looks the command up in create (runc init, before the exec fifo): Create fails, not Start');
  await assertNothingOf(t, { shim: s.shim, id, bundle, files: LEFT_AFTER_FAILED_CREATE });
  editSpec(bundle, (spec) => { spec.process.args = ['true']; });
  await lifecycle(t, s, id, bundle);

  // A file that exists and has its x bits but is no executable: runc's lookup passes, execve fails after Start.
  const id2 = 'no-exe-format';
  const bundle2 = shims.bundle(id2, ['/tmp/not-an-exe']);
  const hostDir = path.join(shims.root, 'not-an-exe-dir');
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, 'not-an-exe'), '\x7fELF? not really\n', { mode: 0o755 });
  editSpec(bundle2, (spec) => spec.mounts.push({ destination: '/tmp', type: 'bind', source: hostDir, options: ['rbind', 'ro'] }));
  const created = await s.shim.call('Create', shims.createReq(id2, bundle2, { options: goodOptions() }));
  t.ok(created.pid > 0, 'Create succeeds');
  let startErr: unknown;
  try {
    await s.shim.call('Start', { id: id2, exec_id: '' });
  } catch (e) {
    startErr = e;
  }
  // runc start only opens the exec fifo: the execve in runc init comes after, so Start succeeds (the Go shim alike).
  t.equal(startErr, undefined, 'Start succeeds');
  const w = await s.shim.call('Wait', { id: id2, exec_id: '' });
  t.equal(w.exit_status, 1, 'the container exits 1 (runc init)');
  t.equal(fs.readFileSync(path.join(bundle2, 'out.log'), 'utf8'), 'exec /tmp/not-an-exe: exec format error\n', 'runc init says why on the container\'s stderr');
  await s.events.waitFor(() => s.events.for(id2).length >= 3);
  t.same(s.events.for(id2).map((e) => e.topic), ['/tasks/create', '/tasks/start', '/tasks/exit'], 'create, start, exit');
  const d = await s.shim.call('Delete', { id: id2, exec_id: '' });
  t.equal(d.exit_status, w.exit_status, 'Delete reports the same status');
  await assertNothingOf(t, { shim: s.shim, id: id2, bundle: bundle2, files: [...LEFT_AFTER_FAILED_CREATE, 'delete-response.pb', 'init.pid', 'out.log'] });
  await shutdown(t, s.shim);
});

async function mustRun(t: Test, cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${r.command}: ${r.code} ${r.stderr}`);
}

/** Write into dir until its filesystem is full; returns the filler (remove it to give the space back). */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

t.test('disk full: the bundle on a full 64k tmpfs', async (t) => {
  const s = await serve(t, 'full');
  const disk = path.join(shims.root, 'disk');
  fs.mkdirSync(disk);
  await mustRun(t, 'mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]);
  t.teardown(() => run('umount', ['-l', disk]));
  const id = 'full';
  const bundle = bundleIn(path.join(disk, id), id, ['sh', '-c', 'echo hi']);
  fs.mkdirSync(path.join(bundle, 'rootfs'), { mode: 0o711 }); // containerd makes it with the bundle
  const filler = fill(disk);
  const err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: goodOptions() })), Code.Unknown, 'Create in a full bundle');
  // runc could log nothing (log.json is on the full disk too, its stderr is the container's): our own
  // write of options.json beside it names the cause. The Go shim writes options.json before runc runs and
  // fails there: "open <bundle>/options.json: no space left on device", Unknown.
  t.equal(err?.message, `OCI runtime create failed: runc create exited with status 1 (cannot write ${bundle}/options.json: ENOSPC: no space left on device, write)`, 'names ENOSPC and the file');
  // runc's log.json is there but empty (no space to log into); our options.json / runtime temporaries are
  // removed; runc's `.init.pid` temporary (O_EXCL: it would fail every later create here) is removed too.
  await assertNothingOf(t, { shim: s.shim, id, bundle, files: ['config.json', 'log', 'log.json', 'rootfs'] });
  fs.rmSync(filler);
  await lifecycle(t, s, id, bundle);

  // Full after a good Create, before Start: what is left to do needs no space in the bundle.
  const id2 = 'full-later';
  const bundle2 = bundleIn(path.join(disk, id2), id2, ['sh', '-c', 'echo hi; echo to-stderr >&2; exec sleep 1000']);
  await s.shim.call('Create', shims.createReq(id2, bundle2, { options: goodOptions() }));
  const filler2 = fill(disk);
  let startErr: unknown;
  try {
    await s.shim.call('Start', { id: id2, exec_id: '' });
  } catch (e) {
    startErr = e;
  }
  t.comment(`Start with the disk full: ${startErr ? (startErr as Error).message : 'ok'}`);
  t.equal(startErr, undefined, 'Start works');
  t.equal((await s.shim.call('State', { id: id2, exec_id: '' })).status, STATUS.RUNNING, 'RUNNING');
  await s.shim.call('Kill', { id: id2, exec_id: '', signal: 9, all: false });
  const w = await s.shim.call('Wait', { id: id2, exec_id: '' }, 15_000);
  t.equal(w.exit_status, 137, 'Kill and Wait work: 137');
  let delErr: unknown;
  try {
    await s.shim.call('Delete', { id: id2, exec_id: '' }, 15_000);
  } catch (e) {
    delErr = e;
  }
  // Delete frees (runc state, cgroup, mount) and needs no space: it must work now, not once space is back.
  // Only delete-response.pb (the answer kept for containerd's `shim delete`) cannot be written: logged,
  // and that later `delete` then does the full cleanup itself (below, still with the disk full).
  t.equal(delErr, undefined, 'Delete works with the disk still full');
  await assertNothingOf(t, { shim: s.shim, id: id2, bundle: bundle2, files: ['config.json', 'init.pid', 'log', 'log.json', 'options.json', 'out.log', 'rootfs', 'runtime'] });
  t.equal(fs.readFileSync(path.join(bundle2, 'out.log'), 'utf8'), '', 'the output found no space (the copy failed without wedging the container)');
  await shutdown(t, s.shim);
  const del = spawnSync(SHIM, ['-namespace', DIRECT_NS, '-address', shims.containerdAddress, '-publish-binary', '/bin/true', '-id', id2, '-bundle', bundle2, 'delete'],
    { cwd: bundle2, timeout: 30_000, env: { ...process.env, TTRPC_ADDRESS: s.events.socket } });
  t.equal(del.status, 0, `containerd's \`shim delete\` exits 0 with the disk still full (${del.stderr})`);

  // Space back: the id and the bundle work again (a shim of its own: the first has gone).
  fs.rmSync(filler2);
  editSpec(bundle2, (spec) => { spec.process.args = ['true']; });
  const s2 = await serve(t, 'full-again');
  await lifecycle(t, s2, id2, bundle2);
  await shutdown(t, s2.shim);
});

t.test('read-only bundle: a read-only bind of the bundle onto itself', async (t) => {
  const s = await serve(t, 'ro');
  for (const withRootfs of [false, true]) {
    const id = withRootfs ? 'ro-with-rootfs' : 'ro';
    const bundle = bundleIn(path.join(shims.root, `ro-${id}`, id), id, ['true']);
    // containerd makes rootfs/ with the bundle; without it the shim's own mkdir is the first write.
    if (withRootfs) fs.mkdirSync(path.join(bundle, 'rootfs'), { mode: 0o711 });
    await mustRun(t, 'mount', ['--bind', bundle, bundle]);
    t.teardown(() => run('umount', ['-l', bundle]));
    await mustRun(t, 'mount', ['-o', 'remount,bind,ro', bundle]);
    // stdio outside the bundle (containerd's fifos are in /run/containerd/fifo)
    const out = path.join(shims.root, `${id}.out`);
    const err = await expectStatus(t, s.shim.call('Create', shims.createReq(id, bundle, { options: goodOptions(), stdout: out, stderr: out })), Code.Unknown, `Create in a read-only bundle (${withRootfs ? 'rootfs/ there' : 'no rootfs/'})`);
    t.equal(err?.message, withRootfs
      ? `OCI runtime create failed: runc create exited with status 1 (cannot write ${bundle}/options.json: EROFS: read-only file system, open '${bundle}/options.json.${s.shim.pid}.tmp')`
      // (this said ENOENT before: Node's recursive mkdir misreports EROFS)
      : `EROFS: read-only file system, mkdir '${bundle}/rootfs'`, 'names EROFS and the path');
    await assertNothingOf(t, { shim: s.shim, id, bundle, files: withRootfs ? ['config.json', 'log', 'rootfs'] : ['config.json', 'log'], ownMounts: [bundle] });
    await mustRun(t, 'umount', [bundle]);
    await lifecycle(t, s, id, bundle, { options: goodOptions(), stdout: out, stderr: out });
  }
  await shutdown(t, s.shim);
});

t.test('nothing left of this file\'s shims', async (t) => {
  await shims.assertNothingLeft(t, 7);
});
