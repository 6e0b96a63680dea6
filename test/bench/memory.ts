// Shim memory through the CRI: PSS and RSS (from /proc/<pid>/smaps_rollup) summed over every
// shim process serving a handler's pods, for 1 pod and for BENCH_PODS pods (sandbox + one
// `sleep` container each), idle after a settle and again after BENCH_MEM_EXECS ExecSync `true`.
// One handler at a time: while a handler is measured, only its pods exist.
import { containerPid, readProcess, sandboxPid, sleep, waitFor, type Pod } from '../integration/harness';
import type { BenchCri, BenchHandler } from './cri-env';
import { removePod, runPod, SLEEPER } from './cri-env';
import { figureOfSamples, type Column, type Figure } from './table';
import { KNOBS, memOf, pool, progress, recordError } from './util';

const SECTION = 'memory of all shim processes (CRI)';
const MiB = 1024;

interface Sample {
  shims: number;
  pssKiB: number;
  rssKiB: number;
}

interface PhaseResult {
  idle: Sample;
  afterExecs: Sample;
}

/** Shim daemons of this containerd (not the short-lived `start` / `delete` invocations). */
function shimDaemons(cri: BenchCri): number[] {
  return cri.env.cd
    .shims()
    .filter(p => !['start', 'delete'].includes(p.argv[p.argv.length - 1]!))
    .map(p => p.pid);
}

/** The shim daemons among the ancestors of pid (a pod's processes are children of their shim). */
function shimAncestors(pid: number, daemons: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (let p = readProcess(pid); p && p.pid > 1; p = readProcess(p.ppid)) if (daemons.has(p.pid)) out.push(p.pid);
  return out;
}

/**
 * Every shim process serving these pods: the daemons that are ancestors of a pod's sandbox or
 * container process, plus any daemon started since `baseline` (only this handler's pods exist).
 */
async function shimsOf(cri: BenchCri, pods: ReadonlyArray<{ pod: Pod; cid: string }>, baseline: ReadonlySet<number>): Promise<number[]> {
  const daemons = new Set(shimDaemons(cri));
  const pids = new Set<number>([...daemons].filter(p => !baseline.has(p)));
  for (const { pod, cid } of pods) {
    for (const p of [await sandboxPid(pod.cri, pod.id), await containerPid(pod.cri, cid)]) {
      if (!p) throw new Error(`pod ${pod.id}: no sandbox or container pid`);
      for (const s of shimAncestors(p, daemons)) pids.add(s);
    }
  }
  return [...pids];
}

async function sample(cri: BenchCri, pods: ReadonlyArray<{ pod: Pod; cid: string }>, baseline: ReadonlySet<number>): Promise<Sample> {
  await sleep(KNOBS.settleMs);
  const shims = await shimsOf(cri, pods, baseline);
  let pssKiB = 0;
  let rssKiB = 0;
  for (const pid of shims) {
    const m = memOf(pid);
    if (!m) throw new Error(`shim ${pid} vanished while being measured`);
    pssKiB += m.pssKiB;
    rssKiB += m.rssKiB;
  }
  return { shims: shims.length, pssKiB, rssKiB };
}

/** Wait (up to 15 s) until the shims of earlier pods are gone; returns those that stay. */
async function quietBaseline(cri: BenchCri): Promise<Set<number>> {
  await waitFor(() => shimDaemons(cri).length === 0, { timeoutMs: 15_000, intervalMs: 100 });
  const left = shimDaemons(cri);
  if (left.length) progress(`memory: shim daemons still running before the next phase (not counted unless they serve its pods): ${left.join(', ')}`);
  return new Set(left);
}

/** `count` pods of handler h: idle sample, `execs` ExecSync spread round-robin, sample again. */
async function phase(cri: BenchCri, h: BenchHandler, count: number): Promise<PhaseResult> {
  const baseline = await quietBaseline(cri);
  const pods: Array<{ pod: Pod; cid: string }> = [];
  try {
    await pool(Array.from({ length: count }), KNOBS.podConcurrency, async () => {
      const entry = { pod: await runPod(cri.env, h, 'mem'), cid: '' };
      pods.push(entry); // removed in the finally block even if its container fails
      entry.cid = await entry.pod.run('sleeper', SLEEPER);
    });
    const idle = await sample(cri, pods, baseline);
    for (let i = 0; i < KNOBS.memExecs; i++) {
      const { pod, cid } = pods[i % pods.length]!;
      const r = await pod.cri.execSync(cid, ['true']);
      if (r.exit_code !== 0) throw new Error(`ExecSync true in ${cid} (${h.name}) exited ${r.exit_code}`);
    }
    const afterExecs = await sample(cri, pods, baseline);
    return { idle, afterExecs };
  } finally {
    // The figures are taken: a failed teardown fails the run (recordError) without losing them.
    await pool(pods, KNOBS.podConcurrency, ({ pod }) => removePod(pod).catch((e: Error) => recordError(`${h.name}: ${e.message}`)));
  }
}

type PerColumn<T> = Partial<Record<Column, T>>;

function rows(label: string, results: PerColumn<Sample[]>, pods: number): Figure[] {
  const pick = (f: (s: Sample) => number): PerColumn<number[]> => Object.fromEntries(Object.entries(results).map(([c, ss]) => [c, ss!.map(f)]));
  const out = [
    figureOfSamples(SECTION, `${label}: PSS total`, 'MiB', 'lower', pick(s => s.pssKiB / MiB)),
    figureOfSamples(SECTION, `${label}: RSS total`, 'MiB', 'lower', pick(s => s.rssKiB / MiB)),
  ];
  if (pods > 1) {
    out.push(
      figureOfSamples(SECTION, `${label}: PSS per pod`, 'MiB', 'lower', pick(s => s.pssKiB / MiB / pods)),
      figureOfSamples(SECTION, `${label}: RSS per pod`, 'MiB', 'lower', pick(s => s.rssKiB / MiB / pods)),
    );
  }
  return out;
}

export async function memoryFigures(cri: BenchCri): Promise<Figure[]> {
  const { memRepeats: repeats, pods: many, memExecs: execs } = KNOBS;
  const one: PerColumn<PhaseResult[]> = {};
  progress(`memory: 1 pod, ${repeats} repeats per handler, idle and after ${execs} execs`);
  for (let i = 0; i < repeats; i++) {
    for (const h of i % 2 ? [...cri.handlers].reverse() : cri.handlers) (one[h.column] ??= []).push(await phase(cri, h, 1));
  }
  const lots: PerColumn<PhaseResult[]> = {};
  for (const h of cri.handlers) {
    progress(`memory: ${many} pods on ${h.name}`);
    lots[h.column] = [await phase(cri, h, many)];
  }
  const field = (r: PerColumn<PhaseResult[]>, k: keyof PhaseResult): PerColumn<Sample[]> =>
    Object.fromEntries(Object.entries(r).map(([c, xs]) => [c, xs!.map(x => x[k])]));
  const spread = many > 1 ? `, spread round-robin (${Math.round((execs / many) * 10) / 10} per pod)` : '';
  return [
    ...rows(`1 pod, idle (n=${repeats})`, field(one, 'idle'), 1),
    ...rows(`1 pod, after ${execs} ExecSync (n=${repeats})`, field(one, 'afterExecs'), 1),
    ...rows(`${many} pods, idle`, field(lots, 'idle'), many),
    ...rows(`${many} pods, after ${execs} ExecSync`, field(lots, 'afterExecs'), many),
    figureOfSamples(
      SECTION,
      `${many} pods: shim processes`,
      'procs',
      'lower',
      Object.fromEntries(Object.entries(lots).map(([c, xs]) => [c, xs!.map(x => x.idle.shims)])),
      `Each pod: sandbox + one \`sleep\` container. Idle = ${KNOBS.settleMs} ms after the last pod started; ` +
        `after ${execs} sequential ExecSync \`true\` (1 pod: all into its container; ${many} pods: ${execs} in total${spread}), again after the settle. ` +
        'Shim processes = daemons that are ancestors of a pod process, plus any started during the phase.',
    ),
  ];
}
