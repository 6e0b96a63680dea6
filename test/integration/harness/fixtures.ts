// busybox test fixtures, built from Debian's busybox-static (no registry, no internet):
//  - a rootfs directory for `ctr run --rootfs`
//  - an OCI image layout tarball for `ctr images import`, named docker.io/library/busybox:latest
//
// Built once per test process into a temporary directory that is removed when the process exits.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { runOk } from './proc';

export const BUSYBOX_BINARY = '/bin/busybox';
export const BUSYBOX_IMAGE = 'docker.io/library/busybox:latest';
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

let cacheDir: string | undefined;

/** The per-process fixture directory (created on first use, removed at exit). */
export function fixturesDir(): string {
  if (!cacheDir) {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-fx-'));
    const dir = cacheDir;
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  return cacheDir;
}

function goArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}

async function buildRootfs(dir: string): Promise<void> {
  if (!fs.existsSync(BUSYBOX_BINARY)) throw new Error(`${BUSYBOX_BINARY} missing: install busybox-static`);
  const tmp = `${dir}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'root', 'usr/bin', 'usr/sbin', 'sbin']) {
    fs.mkdirSync(path.join(tmp, d), { recursive: true });
  }
  fs.chmodSync(path.join(tmp, 'tmp'), 0o1777);
  fs.copyFileSync(BUSYBOX_BINARY, path.join(tmp, 'bin/busybox'));
  fs.chmodSync(path.join(tmp, 'bin/busybox'), 0o755);
  const list = (await runOk(BUSYBOX_BINARY, ['--list'], { timeoutMs: 10_000 })).stdout.split('\n').map(s => s.trim()).filter(Boolean);
  for (const applet of list) {
    if (applet === 'busybox' || applet.includes('/')) continue;
    fs.symlinkSync('busybox', path.join(tmp, 'bin', applet));
  }
  fs.writeFileSync(path.join(tmp, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  fs.writeFileSync(path.join(tmp, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  fs.renameSync(tmp, dir);
}

let rootfsPromise: Promise<string> | undefined;

/** A busybox rootfs directory: /bin/busybox plus applet symlinks, /proc /sys /dev /tmp /etc. */
export function busyboxRootfs(): Promise<string> {
  rootfsPromise ??= (async () => {
    const dir = path.join(fixturesDir(), 'rootfs');
    await buildRootfs(dir);
    return dir;
  })();
  return rootfsPromise;
}

function sha256(b: Buffer | string): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

async function buildImageTar(out: string): Promise<void> {
  const work = fs.mkdtempSync(path.join(fixturesDir(), 'oci-'));
  // A pristine rootfs of its own: the shared one may have been used by `ctr run --rootfs`.
  const rootfs = path.join(work, 'rootfs');
  await buildRootfs(rootfs);
  const layout = path.join(work, 'layout');
  const blobs = path.join(layout, 'blobs/sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const putBlob = (data: Buffer): { digest: string; size: number } => {
    const hex = sha256(data);
    fs.writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };

  // The layer: an uncompressed tar (its digest is the diff_id), stored gzipped.
  const layerTar = path.join(work, 'layer.tar');
  await runOk('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', rootfs, '-cf', layerTar, '.'], { timeoutMs: 60_000 });
  const raw = fs.readFileSync(layerTar);
  const layer = putBlob(zlib.gzipSync(raw));
  const diffId = `sha256:${sha256(raw)}`;

  const config = putBlob(
    Buffer.from(
      JSON.stringify({
        created: '1970-01-01T00:00:00Z',
        architecture: goArch(),
        os: 'linux',
        config: { Env: [DEFAULT_PATH_ENV], Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created: '1970-01-01T00:00:00Z', created_by: 'runcts test fixture from busybox-static' }],
      }),
    ),
  );
  const manifest = putBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    ),
  );
  // ctr 1.6 `images import` names an image after the io.containerd.image.name annotation of its
  // index entry; org.opencontainers.image.ref.name ("latest") alone would only give a name when
  // combined with `--base-name docker.io/library/busybox`.
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        ...manifest,
        platform: { architecture: goArch(), os: 'linux' },
        annotations: {
          'io.containerd.image.name': BUSYBOX_IMAGE,
          'org.opencontainers.image.ref.name': 'latest',
        },
      },
    ],
  };
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await runOk('tar', ['--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', `${out}.tmp`, 'oci-layout', 'index.json', 'blobs'], { timeoutMs: 60_000 });
  fs.renameSync(`${out}.tmp`, out);
  fs.rmSync(work, { recursive: true, force: true });
}

let imagePromise: Promise<string> | undefined;

/** Path of an OCI image tarball (one gzipped busybox layer, Cmd ["sh"], Env PATH). */
export function busyboxImageTar(): Promise<string> {
  imagePromise ??= (async () => {
    const out = path.join(fixturesDir(), 'busybox-oci.tar');
    await buildImageTar(out);
    return out;
  })();
  return imagePromise;
}
