// The CRI containerd of the benchmark: the harness' CRI containerd (handlers `runc` → Go shim,
// `runcts` → ours) plus, when grouping mode is measured, a third handler `runcts-grouped`: the
// runcts runtime type with a ConfigPath options file that turns on one daemon per namespace.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { containerdDist, criRuntimeTable, CRI_NAMESPACE, listProcesses, Pod, podSandboxConfig, repoRoot, RUNTIME_RUNCTS, startCriContainerd, waitFor, type CriContainerd, type NamespaceMode } from '../integration/harness';
import type { FrozenShim } from './frozen-shim';
import type { Column } from './table';
import { KNOBS, progress, uniqueId } from './util';

/** The long-running container of the exec and memory figures. */
export const SLEEPER = { command: ['sleep', '1000000'] };

export const GROUPED_HANDLER = 'runcts-grouped';
const DEFAULT_GROUPING_OPTION = 'ShimGrouping = "namespace"';

export interface BenchHandler {
  /** The table column its figures go to. */
  column: Column;
  /** CRI runtime handler name. */
  name: string;
}

export interface GroupingMode {
  enabled: boolean;
  /** The TOML line put into the ConfigPath file. */
  option: string;
  /** Why enabled or not (printed). */
  reason: string;
}

/**
 * Whether to measure "runcts grouped": BENCH_GROUPED=1 / 0 decides; unset, it is measured when
 * README.md documents a grouping key set to "namespace" (the feature exists). The option line
 * is README's, or BENCH_GROUPED_OPTION, or `ShimGrouping = "namespace"`.
 */
export function groupingMode(): GroupingMode {
  const readme = fs.readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');
  const documented = /^\s*(\w*Group\w*\s*=\s*"namespace")/m.exec(readme)?.[1];
  const option = process.env.BENCH_GROUPED_OPTION ?? documented ?? DEFAULT_GROUPING_OPTION;
  const env = process.env.BENCH_GROUPED;
  if (env === '1') return { enabled: true, option, reason: 'BENCH_GROUPED=1' };
  if (env === '0') return { enabled: false, option, reason: 'BENCH_GROUPED=0' };
  return documented
    ? { enabled: true, option, reason: `README.md documents ${documented}` }
    : { enabled: false, option, reason: 'README.md documents no grouping key yet (BENCH_GROUPED=1 forces it)' };
}

export interface BenchCri {
  env: CriContainerd;
  handlers: BenchHandler[];
  stop(): Promise<string[]>;
}

/** The CRI containerd with handlers runcts, runc and (grouping.enabled) runcts-grouped; runcts from `frozen` when given. */
export async function startBenchCri(grouping: GroupingMode, frozen?: FrozenShim, logLevel = 'info'): Promise<BenchCri> {
  const handlers: BenchHandler[] = [
    { column: 'runcts', name: 'runcts' },
    { column: 'go', name: 'runc' },
  ];
  const only = process.env.BENCH_CRI_HANDLERS?.split(',').map(x => x.trim());
  let extraConfig = '';
  let optsDir: string | undefined;
  if (grouping.enabled) {
    optsDir = fs.mkdtempSync('/tmp/rc-bench-opts-');
    const file = path.join(optsDir, 'runcts-grouped.toml');
    fs.writeFileSync(file, `${grouping.option}\n`);
    const table = `${criRuntimeTable(await containerdDist(KNOBS.containerd))}.containerd.runtimes.${GROUPED_HANDLER}`;
    extraConfig = [`\n[${table}]`, `  runtime_type = ${JSON.stringify(RUNTIME_RUNCTS)}`, `[${table}.options]`, `  ConfigPath = ${JSON.stringify(file)}`, ''].join('\n');
    handlers.push({ column: 'grouped', name: GROUPED_HANDLER });
  }
  if (only) handlers.splice(0, handlers.length, ...handlers.filter(h => only.includes(h.name)));
  await waitForForeignK8sShims();
  const env = await startCriContainerd({ logLevel, extraConfig, version: KNOBS.containerd });
  frozen?.use(env.cd);
  const cri: BenchCri = {
    env,
    handlers,
    async stop(): Promise<string[]> {
      await lingeringShims(env);
      const notes = await env.stop();
      if (optsDir) fs.rmSync(optsDir, { recursive: true, force: true });
      return notes;
    },
  };
  if (handlers.some(h => h.name === GROUPED_HANDLER)) await probeGrouped(cri, grouping).catch(async e => {
    await cri.stop();
    throw e;
  });
  return cri;
}

/**
 * With no pod left, give shims that linger after their last container (grouping mode waits 10 s
 * for the next one) up to 15 s to exit by themselves, rather than have stop() kill them.
 */
async function lingeringShims(env: CriContainerd): Promise<void> {
  if (!env.cd.running || env.cd.shims().length === 0) return;
  const pods = await env.cri.listPodSandbox().catch(() => undefined);
  if (pods?.length !== 0) return;
  progress('waiting for lingering shims to exit');
  await waitFor(() => env.cd.shims().length === 0, { timeoutMs: 15_000, intervalMs: 200 });
}

/** One pod on runcts-grouped first, so that a missing grouping feature fails with a clear message. */
async function probeGrouped(cri: BenchCri, grouping: GroupingMode): Promise<void> {
  const h = cri.handlers.find(x => x.name === GROUPED_HANDLER)!;
  let pod: Pod;
  try {
    pod = await runPod(cri.env, h, 'probe');
  } catch (e) {
    throw new Error(`${GROUPED_HANDLER}: RunPodSandbox with \`${grouping.option}\` in its ConfigPath file failed (${grouping.reason}; does the shim implement grouping mode? BENCH_GROUPED=0 skips it): ${(e as Error).message}`);
  }
  await removePod(pod);
}

/**
 * The CRI harness refuses to start while another containerd runs shims in namespace k8s.io (the
 * runc state directory would be shared); a CRI test run may be under way: wait for it (10 min).
 */
async function waitForForeignK8sShims(): Promise<void> {
  const foreign = (): number[] =>
    listProcesses()
      .filter(p => p.state !== 'Z' && /containerd-shim/.test(p.argv.join(' ')) && p.argv[p.argv.indexOf('-namespace') + 1] === CRI_NAMESPACE)
      .map(p => p.pid);
  if (foreign().length === 0) return;
  progress(`waiting for shims of another containerd in namespace ${CRI_NAMESPACE} to go: ${foreign().join(', ')}`);
  if (!(await waitFor(() => foreign().length === 0, { timeoutMs: 600_000, intervalMs: 1000 }))) {
    throw new Error(`shims of another containerd still serve ${CRI_NAMESPACE} after 10 min: ${foreign().join(', ')}`);
  }
}

/** Pod network for the CRI figures: BENCH_CRI_NETWORK=POD (CNI bridge, default) or NODE (host). */
export function podNetwork(): NamespaceMode {
  const v = process.env.BENCH_CRI_NETWORK ?? 'POD';
  if (v !== 'POD' && v !== 'NODE') throw new Error(`BENCH_CRI_NETWORK=${v}: expected POD or NODE`);
  return v;
}

/** RunPodSandbox with the kubelet-like config of the harness (log directory created first). */
export async function runPod(env: CriContainerd, handler: BenchHandler, prefix: string): Promise<Pod> {
  const config = podSandboxConfig(env, uniqueId(`${prefix}-${handler.column}`), { network: podNetwork() });
  fs.mkdirSync(config.log_directory!, { recursive: true });
  const id = await env.cri.runPodSandbox(config, handler.name);
  return new Pod(env, id, config);
}

/** StopPodSandbox + RemovePodSandbox; a failure throws. */
export async function removePod(pod: Pod): Promise<void> {
  const errs = await pod.remove();
  if (errs.length) throw new Error(`removing pod ${pod.config.metadata.name}: ${errs.join('; ')}`);
}
