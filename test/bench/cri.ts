// CRI figures on one CRI containerd, the handlers in alternation: a pod's whole lifecycle the
// way the kubelet drives it, and ExecSync latency.
import { sleep, type Pod } from '../integration/harness';
import { podNetwork, removePod, runPod, SLEEPER, type BenchCri, type BenchHandler } from './cri-env';
import { figureOfSamples, type Column, type Figure } from './table';
import { alternate, KNOBS, progress, timeMs } from './util';

const SECTION = 'CRI (one CRI containerd)';

/** Poll ContainerStatus (every 10 ms) until the container has exited. */
async function waitExited(pod: Pod, id: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await pod.cri.containerStatus(id)).status;
    if (s.state === 'CONTAINER_EXITED') {
      if (s.exit_code !== 0) throw new Error(`container ${id} exited ${s.exit_code}: ${s.reason} ${s.message}`);
      return;
    }
    if (Date.now() >= deadline) throw new Error(`container ${id} still ${s.state} after ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** RunPodSandbox, CreateContainer + StartContainer of `true`, its exit, StopPodSandbox, RemovePodSandbox. */
async function podLifecycle(cri: BenchCri, h: BenchHandler): Promise<void> {
  const pod = await runPod(cri.env, h, 'life');
  try {
    const id = await pod.run('true', { command: ['true'] });
    await waitExited(pod, id);
  } finally {
    await removePod(pod);
  }
}

function contenders(handlers: readonly BenchHandler[], fn: (h: BenchHandler) => Promise<number>): Partial<Record<Column, () => Promise<number>>> {
  return Object.fromEntries(handlers.map(h => [h.column, () => fn(h)]));
}

export async function lifecycleFigures(cri: BenchCri): Promise<Figure[]> {
  const n = Math.max(1, Math.ceil(KNOBS.rounds / 2));
  progress(`CRI: pod lifecycle latency, ${n} rounds (${cri.handlers.map(h => h.name).join(', ')})`);
  const samples = await alternate(n, contenders(cri.handlers, h => timeMs(() => podLifecycle(cri, h))));
  const net = podNetwork() === 'POD' ? 'CNI bridge' : 'host network';
  return [
    figureOfSamples(
      SECTION,
      `pod lifecycle, 1 container true (n=${n})`,
      'ms',
      'lower',
      samples,
      `RunPodSandbox (${net}) + CreateContainer + StartContainer + exit seen by ContainerStatus (polled every 10 ms) + StopPodSandbox + RemovePodSandbox, end to end.`,
    ),
  ];
}

export async function execSyncFigures(cri: BenchCri): Promise<Figure[]> {
  const n = KNOBS.rounds;
  progress(`CRI: ExecSync latency, ${n} rounds`);
  const pods: Array<{ h: BenchHandler; pod: Pod; id: string }> = [];
  try {
    for (const h of cri.handlers) {
      const pod = await runPod(cri.env, h, 'exec');
      pods.push({ h, pod, id: await pod.run('sleeper', SLEEPER) });
    }
    const samples = await alternate(
      n,
      contenders(cri.handlers, h => {
        const { pod, id } = pods.find(p => p.h === h)!;
        return timeMs(async () => {
          const r = await pod.cri.execSync(id, ['true']);
          if (r.exit_code !== 0) throw new Error(`ExecSync true in ${id} (${h.name}) exited ${r.exit_code}: ${r.stderr.toString()}`);
        });
      }),
    );
    return [figureOfSamples(SECTION, `ExecSync true (n=${n})`, 'ms', 'lower', samples)];
  } finally {
    for (const { pod } of pods) await removePod(pod);
  }
}
