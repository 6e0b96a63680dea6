// The containerd versions the integration tests run against: Debian's 1.6 (the system's
// /usr/bin/containerd, ctr and Go shim) and upstream builds of later versions, one tarball per
// tag in the dist directory (`../shared/containerd` beside the checkout, or
// RUNCTS_CONTAINERD_DIST), each holding bin/containerd, bin/ctr and that tag's own
// bin/containerd-shim-runc-v2. A tarball is checked against the directory's SHA256SUMS and
// unpacked once per machine into CACHE_ROOT/<tag>-<sha256 prefix>, atomically (unpacked under a
// temporary name, then renamed into place: two test processes racing both unpack, one rename
// wins, the other's copy is thrown away).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './containerd';
import { run } from './proc';

/** containerd versions by major.minor; '1.6' is the system's. */
export type ContainerdVersion = '1.6' | '1.7' | '2.2' | '2.3';
export const SYSTEM_CONTAINERD: ContainerdVersion = '1.6';
/** Every version the suite knows, oldest first. */
export const CONTAINERD_VERSIONS: readonly ContainerdVersion[] = ['1.6', '1.7', '2.2', '2.3'];
/** The versions that come from the dist directory (the matrix beyond the system's). */
export const DIST_CONTAINERD_VERSIONS: readonly ContainerdVersion[] = ['1.7', '2.2', '2.3'];
export const CACHE_ROOT = '/var/cache/runcts-test/containerd';
const SYSTEM_BIN = '/usr/bin';

export interface ContainerdDist {
  version: ContainerdVersion;
  /** The upstream tag (v2.3.4), or "system" for 1.6. */
  tag: string;
  /** The highest config `version` this containerd reads: 1.x 2, 2.0-2.2 3, 2.3 4. */
  configVersion: 2 | 3 | 4;
  /** Directory holding containerd, ctr and containerd-shim-runc-v2. */
  binDir: string;
  containerd: string;
  ctr: string;
  /** That version's own Go shim (io.containerd.runc.v2). */
  goShim: string;
}

/** Where the tarballs are: RUNCTS_CONTAINERD_DIST, else <checkout>/../shared/containerd. */
export function containerdDistDir(): string {
  return process.env.RUNCTS_CONTAINERD_DIST || path.join(repoRoot(), '../shared/containerd');
}

export function isContainerdVersion(v: string): v is ContainerdVersion {
  return (CONTAINERD_VERSIONS as readonly string[]).includes(v);
}

/**
 * The versions to test out of `all` (default: the dist versions): RUNCTS_TEST_CONTAINERD="2.3"
 * or "1.7,2.2" narrows them while iterating. Unknown names throw (a typo must not skip everything).
 */
export function containerdVersionsUnderTest(all: readonly ContainerdVersion[] = DIST_CONTAINERD_VERSIONS): ContainerdVersion[] {
  const env = process.env.RUNCTS_TEST_CONTAINERD;
  if (!env) return [...all];
  const wanted = env.split(',').map(s => s.trim()).filter(Boolean);
  for (const w of wanted) if (!isContainerdVersion(w)) throw new Error(`RUNCTS_TEST_CONTAINERD: unknown containerd version ${w} (known: ${CONTAINERD_VERSIONS.join(', ')})`);
  return all.filter(v => wanted.includes(v));
}

function configVersionOf(version: ContainerdVersion): 2 | 3 | 4 {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  if (major < 2) return 2;
  return minor >= 3 ? 4 : 3;
}

interface Tarball {
  file: string;
  tag: string;
  sha256: string;
}

/** The tarball SHA256SUMS lists for version (the highest patch release when several are). */
function findTarball(dir: string, version: ContainerdVersion): Tarball {
  const sums = path.join(dir, 'SHA256SUMS');
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const re = new RegExp(`^([0-9a-f]{64})\\s+\\*?(containerd-(v${version.replace('.', '\\.')}\\.(\\d+))-linux-${arch}\\.tar\\.xz)$`);
  const found = fs
    .readFileSync(sums, 'utf8')
    .split('\n')
    .map(l => re.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(b[4]) - Number(a[4]));
  const m = found[0];
  if (!m) throw new Error(`${sums} lists no containerd-v${version}.N-linux-${arch}.tar.xz`);
  return { file: path.join(dir, m[2]!), tag: m[3]!, sha256: m[1]! };
}

/**
 * Why `version` cannot be used here (the reason to skip its tests), or undefined when it can:
 * the dist directory or its tarball for the version is missing, or (1.6) no system containerd.
 */
export function containerdUnavailable(version: ContainerdVersion): string | undefined {
  if (version === SYSTEM_CONTAINERD) {
    return fs.existsSync(path.join(SYSTEM_BIN, 'containerd')) ? undefined : `containerd ${version}: ${SYSTEM_BIN}/containerd not installed`;
  }
  const dir = containerdDistDir();
  if (!fs.existsSync(path.join(dir, 'SHA256SUMS'))) {
    return `containerd ${version}: no containerd builds in ${dir} (SHA256SUMS missing; set RUNCTS_CONTAINERD_DIST)`;
  }
  try {
    const tb = findTarball(dir, version);
    if (!fs.existsSync(tb.file)) return `containerd ${version}: ${tb.file} missing`;
  } catch (e) {
    return `containerd ${version}: ${(e as Error).message}`;
  }
  return undefined;
}

function distOf(version: ContainerdVersion, tag: string, binDir: string): ContainerdDist {
  return {
    version,
    tag,
    configVersion: configVersionOf(version),
    binDir,
    containerd: path.join(binDir, 'containerd'),
    ctr: path.join(binDir, 'ctr'),
    goShim: path.join(binDir, 'containerd-shim-runc-v2'),
  };
}

async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const BINARIES = ['containerd', 'ctr', 'containerd-shim-runc-v2'];

async function unpack(tb: Tarball, target: string): Promise<void> {
  const actual = await sha256File(tb.file);
  if (actual !== tb.sha256) throw new Error(`${tb.file}: sha256 ${actual}, SHA256SUMS says ${tb.sha256}`);
  fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
  const tmp = `${target}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { mode: 0o755 });
  try {
    const r = await run('tar', ['-xJf', tb.file, '-C', tmp, '--no-same-owner'], { timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`tar -xJf ${tb.file}: exit ${r.code}: ${r.stderr.trim()}`);
    for (const b of BINARIES) {
      const p = path.join(tmp, 'bin', b);
      if (!fs.existsSync(p)) throw new Error(`${tb.file} has no bin/${b}`);
      fs.chmodSync(p, 0o755);
    }
    try {
      fs.renameSync(tmp, target);
    } catch (e) {
      // Another process renamed its copy into place first: use that one.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !complete(target)) throw e;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function complete(dir: string): boolean {
  return BINARIES.every(b => fs.existsSync(path.join(dir, 'bin', b)));
}

const distPromises = new Map<ContainerdVersion, Promise<ContainerdDist>>();

/**
 * containerd, ctr and the Go shim of `version`: the system's for 1.6, else the dist tarball's,
 * unpacked on first use (throws when containerdUnavailable(version) says why not).
 */
export function containerdDist(version: ContainerdVersion = SYSTEM_CONTAINERD): Promise<ContainerdDist> {
  let p = distPromises.get(version);
  if (!p) {
    p = (async () => {
      if (version === SYSTEM_CONTAINERD) return distOf(version, 'system', SYSTEM_BIN);
      const why = containerdUnavailable(version);
      if (why) throw new Error(why);
      const tb = findTarball(containerdDistDir(), version);
      const dir = path.join(CACHE_ROOT, `${tb.tag}-${tb.sha256.slice(0, 12)}`);
      if (!complete(dir)) await unpack(tb, dir);
      return distOf(version, tb.tag, path.join(dir, 'bin'));
    })();
    distPromises.set(version, p);
    p.catch(() => distPromises.delete(version));
  }
  return p;
}
