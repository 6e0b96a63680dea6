// parseMountOptions: which options become mount(2) flags and which go to the filesystem as data,
// compared entry by entry with containerd 1.6's mount/mount_linux.go parseMountOptions.
import * as fs from 'node:fs';
import t from 'tap';
import { mountFlags, parseMountOptions } from '../../shim/runc/mount';

// <linux/mount.h>, written down independently of shim/runc/mount.ts.
const MS: Record<string, number> = {
  MS_RDONLY: 0x1, MS_NOSUID: 0x2, MS_NODEV: 0x4, MS_NOEXEC: 0x8, MS_SYNCHRONOUS: 0x10, MS_REMOUNT: 0x20,
  MS_MANDLOCK: 0x40, MS_DIRSYNC: 0x80, MS_NOATIME: 0x400, MS_NODIRATIME: 0x800, MS_BIND: 0x1000, MS_REC: 0x4000,
  MS_UNBINDABLE: 0x20000, MS_PRIVATE: 0x40000, MS_SLAVE: 0x80000, MS_SHARED: 0x100000, MS_RELATIME: 0x200000,
  MS_STRICTATIME: 0x1000000,
};

// containerd 1.6 mount_linux.go parseMountOptions, its `flags` map transcribed: option -> [clear, flag].
const CONTAINERD_TABLE: Record<string, [boolean, number]> = {
  async: [true, MS.MS_SYNCHRONOUS],
  atime: [true, MS.MS_NOATIME],
  bind: [false, MS.MS_BIND],
  defaults: [false, 0],
  dev: [true, MS.MS_NODEV],
  diratime: [true, MS.MS_NODIRATIME],
  dirsync: [false, MS.MS_DIRSYNC],
  exec: [true, MS.MS_NOEXEC],
  mand: [false, MS.MS_MANDLOCK],
  noatime: [false, MS.MS_NOATIME],
  nodev: [false, MS.MS_NODEV],
  nodiratime: [false, MS.MS_NODIRATIME],
  noexec: [false, MS.MS_NOEXEC],
  nomand: [true, MS.MS_MANDLOCK],
  norelatime: [true, MS.MS_RELATIME],
  nostrictatime: [true, MS.MS_STRICTATIME],
  nosuid: [false, MS.MS_NOSUID],
  rbind: [false, MS.MS_BIND | MS.MS_REC],
  relatime: [false, MS.MS_RELATIME],
  remount: [false, MS.MS_REMOUNT],
  ro: [false, MS.MS_RDONLY],
  rw: [true, MS.MS_RDONLY],
  strictatime: [false, MS.MS_STRICTATIME],
  suid: [true, MS.MS_NOSUID],
  sync: [false, MS.MS_SYNCHRONOUS],
};

/**
 * The Go function, line for line: `if f, exists := flags[o]; exists && f.flag != 0 { set/clear }
 * else if o == "loop" { losetup = true } else { data = append(data, o) }`.
 */
function containerdParse(options: string[]): { flags: number; data: string; losetup: boolean } {
  let flags = 0;
  let losetup = false;
  const data: string[] = [];
  for (const o of options) {
    const f = Object.prototype.hasOwnProperty.call(CONTAINERD_TABLE, o) ? CONTAINERD_TABLE[o] : undefined;
    if (f && f[1] !== 0) flags = f[0] ? flags & ~f[1] : flags | f[1];
    else if (o === 'loop') losetup = true;
    else data.push(o);
  }
  return { flags, data: data.join(','), losetup };
}

const GO_SOURCE = '/usr/share/gocode/src/github.com/containerd/containerd/mount/mount_linux.go';

t.test('the transcribed table is exactly the one in mount_linux.go', { skip: !fs.existsSync(GO_SOURCE) && 'containerd Go sources not installed' }, async (t) => {
  const src = fs.readFileSync(GO_SOURCE, 'utf8');
  const fn = src.slice(src.indexOf('func parseMountOptions'));
  const body = fn.slice(0, fn.indexOf('\n}\n'));
  const parsed: Record<string, [boolean, number]> = {};
  for (const m of body.matchAll(/"([a-z]+)":\s*\{(true|false),\s*([^}]+)\}/g)) {
    const value = m[3].split('|').map((s) => s.trim()).reduce((acc, name) => {
      if (name === '0') return acc;
      const key = name.replace(/^unix\./, '');
      if (!(key in MS)) throw new Error(`unknown constant ${name}`);
      return acc | MS[key];
    }, 0);
    parsed[m[1]] = [m[2] === 'true', value];
  }
  t.same(parsed, CONTAINERD_TABLE);
  t.match(body, /o == loopOpt/, 'containerd also knows "loop"');
});

t.test('mountFlags constants are the kernel values', async (t) => {
  t.equal(mountFlags.MS_RDONLY, 0x1);
  t.equal(mountFlags.MS_BIND, 0x1000);
  t.equal(mountFlags.MS_REC, 0x4000);
  t.equal(mountFlags.MS_REMOUNT, 0x20);
  t.equal(mountFlags.PROPAGATION, MS.MS_SHARED | MS.MS_PRIVATE | MS.MS_SLAVE | MS.MS_UNBINDABLE);
});

t.test('every flag-table option on its own: the same flags and data as containerd', async (t) => {
  for (const name of Object.keys(CONTAINERD_TABLE)) {
    if (name === 'defaults') continue; // its own test below
    const want = containerdParse([name]);
    const got = parseMountOptions([name]);
    t.equal(got.flags, want.flags, `${name}: flags`);
    t.equal(got.data, want.data, `${name}: data`);
    t.equal(got.propagation, 0, `${name}: no propagation`);
  }
});

t.test('every setting option followed by its clearing counterpart clears it, and the reverse sets it', async (t) => {
  const pairs: Array<[string, string, number]> = [
    ['ro', 'rw', MS.MS_RDONLY],
    ['nosuid', 'suid', MS.MS_NOSUID],
    ['nodev', 'dev', MS.MS_NODEV],
    ['noexec', 'exec', MS.MS_NOEXEC],
    ['sync', 'async', MS.MS_SYNCHRONOUS],
    ['noatime', 'atime', MS.MS_NOATIME],
    ['nodiratime', 'diratime', MS.MS_NODIRATIME],
    ['mand', 'nomand', MS.MS_MANDLOCK],
    ['relatime', 'norelatime', MS.MS_RELATIME],
    ['strictatime', 'nostrictatime', MS.MS_STRICTATIME],
  ];
  for (const [set, clear, bit] of pairs) {
    t.same(parseMountOptions([set, clear]), { flags: 0, propagation: 0, data: '', loop: false }, `${set},${clear}`);
    t.same(parseMountOptions([clear, set]), { flags: bit, propagation: 0, data: '', loop: false }, `${clear},${set}`);
    // clearing only touches its own bit
    t.equal(parseMountOptions(['bind', set, 'nosuid', clear]).flags, MS.MS_BIND | (bit === MS.MS_NOSUID ? 0 : MS.MS_NOSUID), `${set} in a mix`);
  }
});

t.test('ro/rw, bind/rbind, nosuid: the common OCI and snapshotter combinations', async (t) => {
  t.same(parseMountOptions(['ro']), { flags: MS.MS_RDONLY, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions(['rw']), { flags: 0, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions(['ro', 'rw']), { flags: 0, propagation: 0, data: '', loop: false }, 'rw clears ro');
  t.same(parseMountOptions(['rw', 'ro']), { flags: MS.MS_RDONLY, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions(['bind']), { flags: MS.MS_BIND, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions(['rbind']), { flags: MS.MS_BIND | MS.MS_REC, propagation: 0, data: '', loop: false });
  // native snapshotter: rbind + rw / ro
  t.same(parseMountOptions(['rbind', 'rw']), { flags: MS.MS_BIND | MS.MS_REC, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions(['rbind', 'ro']), { flags: MS.MS_BIND | MS.MS_REC | MS.MS_RDONLY, propagation: 0, data: '', loop: false });
  // bind then rbind: flags only accumulate
  t.equal(parseMountOptions(['bind', 'rbind']).flags, MS.MS_BIND | MS.MS_REC);
  t.same(parseMountOptions(['nosuid', 'nodev', 'noexec', 'ro']), {
    flags: MS.MS_NOSUID | MS.MS_NODEV | MS.MS_NOEXEC | MS.MS_RDONLY, propagation: 0, data: '', loop: false,
  });
  t.same(parseMountOptions(['remount', 'ro', 'bind']), { flags: MS.MS_REMOUNT | MS.MS_RDONLY | MS.MS_BIND, propagation: 0, data: '', loop: false });
  t.same(parseMountOptions([]), { flags: 0, propagation: 0, data: '', loop: false });
});

t.test('overlay snapshotter options all go to data, in order', async (t) => {
  // What containerd's overlayfs snapshotter hands the shim for a container rootfs.
  const opts = ['index=off', 'workdir=/var/lib/c/s/3/work', 'upperdir=/var/lib/c/s/3/fs', 'lowerdir=/var/lib/c/s/2/fs:/var/lib/c/s/1/fs'];
  const got = parseMountOptions(opts);
  t.same(got, { flags: 0, propagation: 0, data: opts.join(','), loop: false });
  t.equal(got.data, containerdParse(opts).data);
  t.equal(got.flags, containerdParse(opts).flags);
  // a read-only view (View snapshot): lowerdir only, plus ro flag
  t.same(parseMountOptions(['ro', 'lowerdir=/a:/b']), { flags: MS.MS_RDONLY, propagation: 0, data: 'lowerdir=/a:/b', loop: false });
  t.same(parseMountOptions(['index=off']), { flags: 0, propagation: 0, data: 'index=off', loop: false });
});

t.test('unknown options go to data preserving their order among flags', async (t) => {
  const opts = ['size=65536k', 'nosuid', 'mode=755', 'ro', 'uid=0', 'rw', 'gid=5', 'userxattr'];
  const want = containerdParse(opts);
  const got = parseMountOptions(opts);
  t.equal(got.data, 'size=65536k,mode=755,uid=0,gid=5,userxattr');
  t.equal(got.data, want.data);
  t.equal(got.flags, MS.MS_NOSUID);
  t.equal(got.flags, want.flags);
  // duplicates are kept, not merged
  t.equal(parseMountOptions(['a=1', 'a=2', 'a=1']).data, 'a=1,a=2,a=1');
  // names are case-sensitive, like the Go map lookup
  t.same(parseMountOptions(['RO', 'Bind']), { flags: 0, propagation: 0, data: 'RO,Bind', loop: false });
});

t.test('option names that are Object.prototype members are data like any unknown option', async (t) => {
  // A Go map lookup only finds the table's own keys; a plain-object lookup also finds inherited ones.
  for (const o of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__']) {
    t.same(parseMountOptions([o]), { flags: 0, propagation: 0, data: o, loop: false }, o);
  }
});

t.test('propagation options are runcts\'s own extension: kept out of flags and data', async (t) => {
  // containerd's table has no propagation entries (they would go to data); runc's libcontainer
  // treats them as propagation flags, and so does runcts.
  const want: Record<string, number> = {
    private: MS.MS_PRIVATE,
    rprivate: MS.MS_PRIVATE | MS.MS_REC,
    shared: MS.MS_SHARED,
    rshared: MS.MS_SHARED | MS.MS_REC,
    slave: MS.MS_SLAVE,
    rslave: MS.MS_SLAVE | MS.MS_REC,
    unbindable: MS.MS_UNBINDABLE,
    runbindable: MS.MS_UNBINDABLE | MS.MS_REC,
  };
  for (const [name, bits] of Object.entries(want)) {
    t.same(parseMountOptions([name]), { flags: 0, propagation: bits, data: '', loop: false }, name);
  }
  const mixed = parseMountOptions(['rbind', 'rprivate', 'ro', 'size=1']);
  t.same(mixed, { flags: MS.MS_BIND | MS.MS_REC | MS.MS_RDONLY, propagation: MS.MS_PRIVATE | MS.MS_REC, data: 'size=1', loop: false });
  t.equal(mixed.flags & mountFlags.PROPAGATION, 0, 'no propagation bit leaks into flags');
});

t.test('"defaults" behaves as in containerd: its flag is 0, so it is passed on as data', async (t) => {
  // mount_linux.go: `if f, exists := flags[o]; exists && f.flag != 0 {...} else {... data = append(data, o)}`.
  t.same(containerdParse(['defaults']), { flags: 0, data: 'defaults', losetup: false });
  const got = parseMountOptions(['defaults']);
  t.equal(got.flags, 0);
  t.equal(got.data, 'defaults', 'containerd hands "defaults" to the filesystem as data');
  t.equal(parseMountOptions(['ro', 'defaults', 'size=1']).data, containerdParse(['ro', 'defaults', 'size=1']).data);
});

t.test('"loop" behaves as in containerd: it asks for a loop device and is never passed to the kernel as data', async (t) => {
  t.same(containerdParse(['loop', 'ro']), { flags: MS.MS_RDONLY, data: '', losetup: true });
  const got = parseMountOptions(['loop', 'ro']);
  t.equal(got.loop, true, '"loop" is recognised');
  t.equal(got.flags, MS.MS_RDONLY);
  t.equal(got.data, '', '"loop" must not reach mount(2) data (the kernel rejects it)');
});
