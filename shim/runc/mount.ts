// Rootfs mounts from the Create request, with containerd's option parsing (flags vs data).
import * as fs from 'node:fs';
import { native } from '../framework/native';

export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

// From <sys/mount.h>.
const MS_RDONLY = 0x1;
const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_SYNCHRONOUS = 0x10;
const MS_REMOUNT = 0x20;
const MS_MANDLOCK = 0x40;
const MS_DIRSYNC = 0x80;
const MS_NOATIME = 0x400;
const MS_NODIRATIME = 0x800;
const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_UNBINDABLE = 0x20000;
const MS_PRIVATE = 0x40000;
const MS_SLAVE = 0x80000;
const MS_SHARED = 0x100000;
const MS_RELATIME = 0x200000;
const MS_STRICTATIME = 0x1000000;
const PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;
const EINVAL_CODES = new Set(['EINVAL', 'ENOENT']);

/** option -> [clear?, flag], as containerd's mount_linux.go parseMountOptions. */
const FLAG_OPTIONS: Record<string, [boolean, number]> = {
  async: [true, MS_SYNCHRONOUS], atime: [true, MS_NOATIME], bind: [false, MS_BIND], defaults: [false, 0],
  dev: [true, MS_NODEV], diratime: [true, MS_NODIRATIME], dirsync: [false, MS_DIRSYNC], exec: [true, MS_NOEXEC],
  mand: [false, MS_MANDLOCK], noatime: [false, MS_NOATIME], nodev: [false, MS_NODEV], nodiratime: [false, MS_NODIRATIME],
  noexec: [false, MS_NOEXEC], nomand: [true, MS_MANDLOCK], norelatime: [true, MS_RELATIME], nostrictatime: [true, MS_STRICTATIME],
  nosuid: [false, MS_NOSUID], rbind: [false, MS_BIND | MS_REC], relatime: [false, MS_RELATIME], remount: [false, MS_REMOUNT],
  ro: [false, MS_RDONLY], rw: [true, MS_RDONLY], strictatime: [false, MS_STRICTATIME], suid: [true, MS_NOSUID],
  sync: [false, MS_SYNCHRONOUS],
};
const PROPAGATION_OPTIONS: Record<string, number> = {
  private: MS_PRIVATE, rprivate: MS_PRIVATE | MS_REC, shared: MS_SHARED, rshared: MS_SHARED | MS_REC,
  slave: MS_SLAVE, rslave: MS_SLAVE | MS_REC, unbindable: MS_UNBINDABLE, runbindable: MS_UNBINDABLE | MS_REC,
};

export function parseMountOptions(options: string[]): { flags: number; propagation: number; data: string; loop: boolean } {
  let flags = 0;
  let loop = false;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = Object.hasOwn(FLAG_OPTIONS, o) ? FLAG_OPTIONS[o] : undefined;
    // As containerd: an option whose flag is 0 (`defaults`) goes to the data string.
    if (f && f[1] !== 0) {
      flags = f[0] ? flags & ~f[1] : flags | f[1];
    } else if (o === 'loop') {
      loop = true;
    } else if (Object.hasOwn(PROPAGATION_OPTIONS, o)) {
      propagation |= PROPAGATION_OPTIONS[o];
    } else {
      data.push(o);
    }
  }
  return { flags, propagation, data: data.join(','), loop };
}

export function mountAll(mounts: MountSpec[], target: string): void {
  for (const m of mounts) {
    const { flags, propagation, data, loop } = parseMountOptions(m.options);
    // containerd sets up a loop device for `loop`; we do not (yet), and say so instead of failing obscurely.
    if (loop) throw Object.assign(new Error(`mount option "loop" is not supported (${m.source})`), { code: 'EINVAL' });
    const n = native();
    // A read-only bind needs a second, remount pass: the kernel ignores MS_RDONLY on the bind itself.
    n.mount(m.source, target, m.type, flags & ~MS_RDONLY | (flags & MS_BIND ? 0 : flags & MS_RDONLY), data);
    if (propagation) n.mount('', target, '', propagation, '');
    if (flags & MS_BIND && flags & MS_RDONLY) n.mount('', target, '', flags | MS_REMOUNT, '');
  }
}

/** Unmount everything stacked on `target`; a path that is not (or no longer) a mount point is fine. */
export function unmountAll(target: string): void {
  if (!fs.existsSync(target)) return;
  for (let i = 0; i < 64; i++) {
    try {
      native().umount(target, 0);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (EINVAL_CODES.has(code)) return;
      if (code === 'EBUSY') {
        native().umount(target, 2 /* MNT_DETACH */);
        continue;
      }
      throw err;
    }
  }
}

export const mountFlags = { MS_RDONLY, MS_BIND, MS_REC, MS_REMOUNT, PROPAGATION };
