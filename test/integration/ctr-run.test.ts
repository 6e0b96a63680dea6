// Issue "runcts runs containers for a real containerd": `ctr run --rm` from an image and from a
// rootfs directory, for containerd's Go shim and for ours.
import t from 'tap';
import { BUSYBOX_IMAGE, busyboxRootfs, expectCode, scenario } from './harness';

scenario(t, 'ctr run --rm <image>', async (t, { cd, runtime, id }) => {
  const hello = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('hello'), 'echo', 'hello']);
  if (!expectCode(t, hello, 0, 'echo hello')) return;
  t.equal(hello.stdout, 'hello\n', 'stdout is the container output');
  t.equal(hello.stderr, '', 'nothing on stderr');

  const exit3 = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('exit3'), 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  expectCode(t, exit3, 3, 'ctr run exits with the container exit code');
  t.equal(exit3.stdout, 'out\n', 'stdout kept apart');
  t.equal(exit3.stderr, 'err\n', 'stderr kept apart');

  // The last bytes a process writes before it exits must reach the fifo (no truncation).
  const big = await cd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('big'), 'sh', '-c', 'seq 1 50000; echo END']);
  expectCode(t, big, 0, 'large output');
  const lines = big.stdout.split('\n');
  t.equal(lines.length, 50002, '50000 numbers, END and the final newline');
  t.equal(lines[49999], '50000', 'no line lost');
  t.equal(big.stdout.slice(-10), '50000\nEND\n', 'output ends with the last write');
});

scenario(t, 'ctr run --rm --rootfs <dir>', async (t, { cd, runtime, id }) => {
  const rootfs = await busyboxRootfs();
  // No image config here: the spec has no PATH, so name the binaries absolutely.
  const hello = await cd.ctr(['run', '--rm', '--runtime', runtime, '--rootfs', rootfs, id('rootfs-hello'), '/bin/echo', 'hello']);
  if (!expectCode(t, hello, 0, 'echo hello')) return;
  t.equal(hello.stdout, 'hello\n', 'stdout is the container output');

  const exit3 = await cd.ctr(['run', '--rm', '--runtime', runtime, '--rootfs', rootfs, id('rootfs-exit3'), '/bin/sh', '-c', 'echo out; exit 3']);
  expectCode(t, exit3, 3, 'ctr run exits with the container exit code');
  t.equal(exit3.stdout, 'out\n', 'stdout');
}, { image: false });
