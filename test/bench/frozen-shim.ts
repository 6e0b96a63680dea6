// A private copy of the runcts build for the whole run: the checkout may be rebuilt while the
// benchmark runs (node-gyp rebuild removes the addon for a while, tsc rewrites dist/), and a
// run must measure one build from start to end. The copy is laid out like `make install` does
// it (bin, dist, proto, package.json, the addon; node_modules linked), its startup snapshot is
// rebuilt in place (the snapshot embeds its directory), and each containerd of the benchmark
// finds it first in its PATH (the harness' binDir). BENCH_FROZEN=0 uses the checkout directly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repoRoot, runOk, waitFor, type Containerd } from '../integration/harness';
import { progress } from './util';

const SHIM = 'containerd-shim-runcts-v2';
const ADDON = 'addon/build/Release/runcts_native.node';

export class FrozenShim {
  private constructor(readonly dir: string) {}

  get binary(): string {
    return path.join(this.dir, 'bin', SHIM);
  }

  /** Copy the checkout's build (waiting up to 5 min for a rebuild in progress to finish). */
  static async create(): Promise<FrozenShim> {
    const root = repoRoot();
    const ready = (): boolean => [ADDON, 'dist/shim/main.js'].every(f => fs.existsSync(path.join(root, f)));
    if (!ready()) {
      progress('waiting for the runcts build in the checkout (addon or dist missing: a rebuild in progress?)');
      if (!(await waitFor(ready, { timeoutMs: 300_000, intervalMs: 1000 }))) throw new Error(`no runcts build in ${root}: run make build`);
      await new Promise(r => setTimeout(r, 2000));
    }
    const dir = fs.mkdtempSync('/tmp/rc-bench-shim-');
    const frozen = new FrozenShim(dir);
    try {
      for (const e of ['bin', 'proto', 'package.json']) fs.cpSync(path.join(root, e), path.join(dir, e), { recursive: true });
      fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true, filter: src => src !== path.join(root, 'dist/test') });
      fs.mkdirSync(path.join(dir, path.dirname(ADDON)), { recursive: true });
      fs.copyFileSync(path.join(root, ADDON), path.join(dir, ADDON));
      fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
      // As `make install` does: the launcher knows where it lives (no readlink at every call).
      const bin = frozen.binary;
      fs.writeFileSync(bin, fs.readFileSync(bin, 'utf8').replace(/^dist=$/m, `dist=${path.join(dir, 'dist')}`));
      await frozen.rebuildSnapshot();
      await runOk(frozen.binary, ['-v'], { timeoutMs: 30_000 });
    } catch (e) {
      frozen.cleanup();
      throw e;
    }
    return frozen;
  }

  /** The startup snapshot names its directory: build it again where the copy lives. */
  private async rebuildSnapshot(): Promise<void> {
    const dist = path.join(this.dir, 'dist');
    fs.rmSync(path.join(dist, 'runcts.blob'), { force: true });
    if (!fs.existsSync(path.join(dist, 'runcts.js'))) return;
    await runOk(process.execPath, ['--snapshot-blob', 'runcts.blob', '--build-snapshot', 'runcts.js'], { cwd: dist, timeoutMs: 120_000 });
  }

  /** Make containerd `cd` start this copy: the shim link at the head of its PATH points here. */
  use(cd: Containerd): void {
    const link = path.join(cd.binDir, SHIM);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(this.binary, link);
  }

  /** What the runcts column runs, for the header. */
  describe(): string {
    const snapshot = fs.existsSync(path.join(this.dir, 'dist/runcts.blob')) ? 'with its startup snapshot' : 'without a startup snapshot';
    return `a copy of the checkout's build in ${this.dir} (${snapshot})`;
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
