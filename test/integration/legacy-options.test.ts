// Runtime options the Go shim honours, sent the ways containerd 1.x clients send them:
// - IoUid/IoGid: the pipes a container reads and writes belong to that uid/gid (as go-runc's
//   NewPipeIO), so that a container root mapped to another host uid owns its stdio;
// - `ctr run --no-pivot` for a runtime not named io.containerd.runc.* sends the v1 runtime's
//   containerd.linux.runc.CreateOptions, which runcts reads (runc gets --no-pivot).
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { busyboxRootfs, expectCode, RUNTIME_RUNCTS, scenario } from './harness';

// `ctr run --uidmap/--gidmap` asks for IoUid/IoGid = the host ids of the container's root
// (WithUIDOwner/WithGIDOwner: runc.v1 Options for the Go shim, CreateOptions for runcts). runc
// itself gives the init's stdio to the container's uid but keeps the group, so the group shows
// whether the shim honoured IoGid: 1001 on the host, which is the container's 0 where ctr made a
// user namespace (2.x; ctr 1.6 makes none for --rootfs), and root's 0 / the overflow gid if not.
scenario(t, 'ctr run --uidmap/--gidmap: the stdio pipes are in group IoGid', async (t, { cd, runtime, id }) => {
  const rootfs = await busyboxRootfs();
  const r = await cd.ctr(['run', '--rm', '--uidmap', '0:1000:65536', '--gidmap', '0:1001:65536', '--runtime', runtime, '--rootfs', rootfs, id('userns'),
    '/bin/sh', '-c', 'stat -L -c "out %g" /proc/self/fd/1; stat -L -c "err %g" /proc/self/fd/2 >&2; cat /proc/self/gid_map']);
  expectCode(t, r, 0, 'ctr run');
  const [out, ...map] = r.stdout.trim().split('\n');
  const userns = /^\s*0\s+1001\s+65536\s*$/.test(map.join('\n'));
  const group = userns ? '0' : '1001';
  t.comment(`containerd's ctr ${userns ? 'made' : 'made no'} user namespace`);
  t.equal(out, `out ${group}`, `stdout pipe in IoGid 1001 (${group} in the container)`);
  t.match(r.stderr, `err ${group}`, 'stderr pipe too');
});

// The same through a runtime options file (runcts: ctr sends the runc.v1 runtime's own options only
// to io.containerd.runc.v2), outside a user namespace: the group is IoGid's.
scenario(t, 'IoUid/IoGid from the options file: the pipes\' group is IoGid', async (t, { cd, runtime, id }) => {
  const config = path.join(cd.dir, 'io-owner.toml');
  fs.writeFileSync(config, 'IoUid = 1000\nIoGid = 1001\n');
  const rootfs = await busyboxRootfs();
  const r = await cd.ctr(['run', '--rm', '--runtime', runtime, '--runtime-config-path', config, '--rootfs', rootfs, id('ioowner'),
    '/bin/sh', '-c', 'stat -L -c "out %g" /proc/self/fd/1; stat -L -c "err %g" /proc/self/fd/2 >&2']);
  expectCode(t, r, 0, 'ctr run');
  t.equal(r.stdout.trim(), 'out 1001', 'stdout pipe in group IoGid');
  t.match(r.stderr, /err 1001/, 'stderr pipe in group IoGid');
  const plain = await cd.ctr(['run', '--rm', '--runtime', runtime, '--rootfs', rootfs, id('ioroot'), '/bin/stat', '-L', '-c', '%g', '/proc/self/fd/1']);
  expectCode(t, plain, 0, 'ctr run without the options');
  t.equal(plain.stdout.trim(), '0', 'without them the group stays root\'s');
}, { runtimes: [RUNTIME_RUNCTS] });

scenario(t, 'ctr run --no-pivot: containerd.linux.runc.CreateOptions reach runc', async (t, { cd, runtime, id }) => {
  // A runc first in containerd's PATH (and so the shim's) that records its arguments.
  const record = path.join(cd.dir, 'runc-args.log');
  const wrapper = path.join(cd.binDir, 'runc');
  fs.writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> ${record}\nexec /usr/sbin/runc "$@"\n`, { mode: 0o755 });
  const rootfs = await busyboxRootfs();
  const cid = id('nopivot');
  const r = await cd.ctr(['run', '--rm', '--no-pivot', '--runtime', runtime, '--rootfs', rootfs, cid, '/bin/echo', 'no-pivot ok']);
  expectCode(t, r, 0, 'ctr run --no-pivot');
  t.equal(r.stdout.trim(), 'no-pivot ok', 'the container ran');
  const creates = fs.readFileSync(record, 'utf8').split('\n').filter((l) => / create /.test(l) && l.endsWith(cid));
  t.equal(creates.length, 1, 'one runc create', { creates });
  t.match(creates[0] ?? '', /--no-pivot/, 'with --no-pivot');
}, { runtimes: [RUNTIME_RUNCTS] });
