// Issue "Kubernetes pods on runcts through containerd's CRI": containerd restarts under a running
// pod. The shim must outlive containerd, keep its containers' stdout writable while nobody reads,
// keep the exit of a container that ended meanwhile, deliver that exit event once containerd is
// back, and serve the reconnected containerd (status, exec, stop). Runs for the `runc` handler
// (containerd's Go shim) first, then for `runcts`.
import * as fs from 'node:fs';
import t from 'tap';
import {
  containerPid,
  criScenario,
  execText,
  isAlive,
  logicalLines,
  parseCriLog,
  sandboxPid,
  shimsOf,
  sleep,
  waitContainerState,
  waitFor,
} from './harness';

/** The logger's tick numbers so far (its stdout lines `tick <n>`). */
function ticks(logPath: string): number[] {
  let text = '';
  try {
    text = fs.readFileSync(logPath, 'utf8');
  } catch {
    return [];
  }
  // A line may be half-written at the end of the file: parse only complete lines.
  text = text.slice(0, text.lastIndexOf('\n') + 1);
  return logicalLines(parseCriLog(text), 'stdout').map(l => Number(/^tick (\d+)$/.exec(l)?.[1] ?? NaN));
}

function logSince(path: string, offset: number): string {
  const fd = fs.openSync(path, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - offset));
    fs.readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

criScenario(
  t,
  'containerd restart: pod and logger keep running (same pids, log continues), the exit while down is kept and its event delivered',
  async (t, ctx) => {
    const { cri, cd, env } = ctx;
    const pod = await ctx.runPod('restart');
    const logger = await pod.run('logger', { command: ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo "tick $i"; usleep 100000; done'] });
    // Exits with 7 once /tmp/exit-now appears in its rootfs (written from the host while containerd is down).
    const exiter = await pod.run('exiter', { command: ['sh', '-c', 'while [ ! -e /tmp/exit-now ]; do usleep 50000; done; exit 7'] });
    const loggerPid = await containerPid(cri, logger);
    const exiterPid = await containerPid(cri, exiter);
    const pausePid = await sandboxPid(cri, pod.id);
    const shimsBefore = shimsOf(env);
    t.equal(shimsBefore.length, 1, 'one shim for the pod');
    const shimPid = shimsBefore[0]!.pid;
    t.ok(await waitFor(() => ticks(pod.logPath('logger')).length >= 5, { timeoutMs: 10_000 }), 'the logger is logging');

    const stoppedAt = Date.now();
    await cd.stopDaemon();
    t.notOk(cd.running, 'containerd stopped');
    t.ok(isAlive(shimPid), 'the shim outlives containerd');
    const ticksAtStop = ticks(pod.logPath('logger')).length;

    fs.writeFileSync(`/proc/${exiterPid}/root/tmp/exit-now`, '');
    t.ok(await waitFor(() => !isAlive(exiterPid), { timeoutMs: 10_000 }), 'the exiter exited while containerd was down');
    // A deliberate outage: the logger writes ~10 lines into its stdout fifo with no reader.
    await sleep(1_000);
    t.ok(isAlive(loggerPid), 'the logger is alive while nobody reads its stdout (no SIGPIPE)');
    t.equal(ticks(pod.logPath('logger')).length, ticksAtStop, 'nothing reached the log file while containerd was down');

    const logOffset = fs.statSync(cd.logPath).size;
    const restartedAt = Date.now();
    await cd.restart();

    // Evidence that the exit event produced while containerd was away reached it afterwards:
    // containerd 1.6 logs every event a shim forwards to it at debug level, e.g.
    //   level=debug msg="event forwarded" ns=k8s.io topic=/tasks/exit type=containerd.events.TaskExit
    // Nothing else exits after the restart until this is checked (no execs yet).
    const forwardedExit = /msg="event forwarded" ns=k8s\.io topic=\/tasks\/exit type=containerd\.events\.TaskExit/;
    const delivered = await waitFor(() => forwardedExit.test(logSince(cd.logPath, logOffset)), { timeoutMs: 20_000, intervalMs: 100 });
    t.ok(delivered, 'containerd.log after the restart: the /tasks/exit event forwarded by the shim', {
      forwarded: logSince(cd.logPath, logOffset)
        .split('\n')
        .filter(l => l.includes('event forwarded')),
    });

    const ps = await cri.podSandboxStatus(pod.id);
    t.equal(ps.status.state, 'SANDBOX_READY', 'the pod is still READY');
    t.equal(await sandboxPid(cri, pod.id), pausePid, 'same pause pid');
    t.same(
      shimsOf(env).map(s => s.pid),
      [shimPid],
      'containerd reconnected to the same shim (no new one)',
    );

    const ls = (await cri.containerStatus(logger)).status;
    t.equal(ls.state, 'CONTAINER_RUNNING', 'the logger is RUNNING');
    t.equal(await containerPid(cri, logger), loggerPid, 'with the same pid');

    const es = (await cri.containerStatus(exiter)).status;
    t.equal(es.state, 'CONTAINER_EXITED', 'the exiter is EXITED');
    t.equal(es.exit_code, 7, 'with its real exit code 7');
    t.equal(es.reason, 'Error', 'reason Error');
    const finishedMs = es.finished_at / 1e6;
    t.ok(finishedMs >= stoppedAt - 5 && finishedMs <= restartedAt + 5, 'finished_at is the real exit time (while containerd was down)', {
      stoppedAt,
      finishedMs,
      restartedAt,
    });

    // The log continues after the restart, and nothing written meanwhile was lost.
    const grown = await waitFor(
      () => {
        const n = ticks(pod.logPath('logger'));
        return n.length >= ticksAtStop + 25 ? n : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    t.ok(grown, 'the logger log continues after the restart (25+ more lines)', { before: ticksAtStop, now: ticks(pod.logPath('logger')).length });
    const all = ticks(pod.logPath('logger'));
    t.ok(
      all.every((n, i) => n === i + 1),
      'tick 1, 2, 3, ... with no gap: the lines written while containerd was down were kept',
      { firstGap: all.findIndex((n, i) => n !== i + 1), around: all.slice(Math.max(0, all.findIndex((n, i) => n !== i + 1) - 2), all.findIndex((n, i) => n !== i + 1) + 3) },
    );
    t.ok(isAlive(loggerPid), 'the logger is still alive');

    t.equal(await execText(cri, logger, ['echo', 'exec-after-restart']), 'exec-after-restart\n', 'ExecSync works after the restart');

    await cri.stopContainer(logger, 2);
    const stopped = await waitContainerState(cri, logger, 'CONTAINER_EXITED');
    t.equal(stopped.exit_code, 137, 'StopContainer after the restart: the logger (pid 1, no TERM handler) is killed: 137');
    await cri.stopPodSandbox(pod.id);
    await cri.removePodSandbox(pod.id);
    t.ok(await waitFor(() => shimsOf(env).length === 0, { timeoutMs: 10_000 }), 'the shim exits after the pod is removed');
  },
  { timeoutMs: 240_000 },
);
