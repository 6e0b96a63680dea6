// Issue "Kubernetes pods on runcts through containerd's CRI": ExecSync (output, exit codes,
// timeouts, concurrency), streaming Exec and Attach through the CRI streaming server's websocket
// channel protocol (stdin, stdout, stderr, status, tty with resize). Every scenario runs for the
// `runc` handler (containerd's Go shim) first, then for `runcts`.
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import t from 'tap';
import {
  containerPid,
  CriError,
  criScenario,
  execText,
  isAlive,
  parseCriLog,
  processesUnderCgroup,
  readProcess,
  STREAM_ERROR,
  STREAM_STDERR,
  STREAM_STDOUT,
  StreamSession,
  statusExitCode,
  waitContainerState,
  waitFor,
} from './harness';

/** The error a CRI call rejected with (fails the test when it resolved). */
async function rejection(p: Promise<unknown>): Promise<CriError | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return e as CriError;
  }
}

criScenario(t, 'ExecSync: stdout, stderr, exit codes, large output, failures, 20 at once', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('execsync');
  const c = await pod.run('c', { command: ['sleep', '3600'] });

  let r = await cri.execSync(c, ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 3']);
  t.equal(r.stdout.toString(), 'to-stdout\n', 'stdout captured');
  t.equal(r.stderr.toString(), 'to-stderr\n', 'stderr captured apart');
  t.equal(r.exit_code, 3, 'non-zero exit code 3');

  r = await cri.execSync(c, ['true']);
  t.same([r.exit_code, r.stdout.length, r.stderr.length], [0, 0, 0], '`true`: exit 0, no output');

  r = await cri.execSync(c, ['sh', '-c', 'kill -9 $$']);
  t.equal(r.exit_code, 137, 'killed by SIGKILL: 137');

  // 1 MiB of numbered lines on stdout, every byte in order.
  r = await cri.execSync(c, ['sh', '-c', 'seq 1 150000']);
  const expected = Array.from({ length: 150000 }, (_, i) => `${i + 1}\n`).join('');
  t.equal(r.exit_code, 0, 'seq: exit 0');
  t.equal(r.stdout.length, expected.length, `seq: ${expected.length} bytes of stdout`);
  t.ok(r.stdout.toString() === expected, 'seq: every line, in order');

  t.equal(await execText(cri, c, ['sh', '-c', 'echo "$FOO"; pwd; id -u']), '\n/\n0\n', 'exec environment: no FOO, cwd /, uid 0');

  // A binary that does not exist: the exec fails to start (runc's error comes back).
  const err = await rejection(cri.execSync(c, ['/nonexistent']));
  t.ok(err instanceof CriError, 'ExecSync of /nonexistent fails');
  t.equal(err?.code, grpc.status.UNKNOWN, 'grpc status UNKNOWN');
  t.match(err?.details ?? '', /failed to exec in container: failed to start exec .*"\/nonexistent".*no such file or directory/, "runc's error in the message");

  // 20 execs at once: each gets its own output and exit code.
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => cri.execSync(c, ['sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${i}`])),
  );
  t.same(
    results.map(x => [x.stdout.toString(), x.stderr.toString(), x.exit_code]),
    Array.from({ length: 20 }, (_, i) => [`out-${i}\n`, `err-${i}\n`, i]),
    '20 concurrent execs: each its own stdout, stderr and exit code',
  );

  const { status } = await cri.containerStatus(c);
  t.equal(status.state, 'CONTAINER_RUNNING', 'the container kept running through all of it');
});

criScenario(t, 'ExecSync with a timeout that expires: DEADLINE_EXCEEDED, the process is killed, the container runs on', async (t, ctx) => {
  const { cri, env } = ctx;
  const pod = await ctx.runPod('exectimeout');
  const c = await pod.run('c', { command: ['sleep', '3600'] });
  const pid = await containerPid(cri, c);

  const sleepers = (): number[] => processesUnderCgroup(env.cgroupParent).filter(p => readProcess(p)?.argv.join(' ') === 'sleep 4242');
  const t0 = Date.now();
  const call = rejection(cri.execSync(c, ['sleep', '4242'], 1));
  const seen = await waitFor(() => sleepers().length === 1, { timeoutMs: 5_000, intervalMs: 20 });
  t.ok(seen, 'the exec process ran (sleep 4242 in the container cgroup)');
  const err = await call;
  const took = Date.now() - t0;
  // containerd 1.6 with the Go shim: code DEADLINE_EXCEEDED,
  // "failed to exec in container: timeout 1s exceeded: context deadline exceeded".
  t.ok(err instanceof CriError, 'ExecSync fails');
  t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED, 'grpc status DEADLINE_EXCEEDED');
  t.match(err?.details ?? '', /^failed to exec in container: timeout 1s exceeded: context deadline exceeded$/, 'message as containerd 1.6 words it');
  t.ok(took >= 950 && took < 15_000, 'after about the timeout', { ms: took });
  t.same(sleepers(), [], 'the timed-out process was killed (gone when ExecSync returned)');

  const { status } = await cri.containerStatus(c);
  t.equal(status.state, 'CONTAINER_RUNNING', 'the container is still RUNNING');
  t.ok(isAlive(pid), 'its process too');
  t.equal(await containerPid(cri, c), pid, 'same pid');
  t.equal(await execText(cri, c, ['echo', 'still-works']), 'still-works\n', 'the next ExecSync works');

  // A timeout that does not expire changes nothing.
  const r = await cri.execSync(c, ['sh', '-c', 'sleep 0.2; echo done'], 10);
  t.same([r.exit_code, r.stdout.toString()], [0, 'done\n'], 'ExecSync within its timeout: normal result');
});

criScenario(t, 'streaming Exec over websocket: stdin, stdout, stderr, exit status (v4 and pre-v4 protocols), tty with resize', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('exec');
  const c = await pod.run('c', { command: ['sleep', '3600'] });

  // stdin → stdout and stderr, exit 7.
  let url = await cri.exec({ container_id: c, cmd: ['sh', '-c', 'read l; echo "out:$l"; echo "err:$l" >&2; exit 7'], stdin: true, stdout: true, stderr: true });
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/\S+$/, 'Exec returns a URL of the streaming server on 127.0.0.1');
  let s = await StreamSession.connect(url);
  t.equal(s.protocol, 'v4.channel.k8s.io', 'subprotocol v4.channel.k8s.io negotiated');
  s.send(0, 'hello\n');
  t.ok(await s.waitFor(STREAM_STDOUT, x => x === 'out:hello\n'), 'stdin reached the process; its stdout came back on channel 1');
  t.ok(await s.waitFor(STREAM_STDERR, x => x === 'err:hello\n'), 'stderr on channel 2');
  let status = await s.status();
  t.equal(statusExitCode(status), 7, 'channel 3: exit code 7', { status });
  t.match(status, { status: 'Failure', reason: 'NonZeroExitCode' }, 'v4 status: Failure, NonZeroExitCode');
  const closed = await s.closed;
  t.equal(closed.code, 1000, 'the server closed the websocket normally');

  // stdout only, exit 0.
  url = await cri.exec({ container_id: c, cmd: ['echo', 'hi'], stdout: true, stderr: true });
  s = await StreamSession.connect(url);
  status = await s.status();
  t.same(status, { metadata: {}, status: 'Success' }, 'v4 status: Success');
  t.equal(s.text(STREAM_STDOUT), 'hi\n', 'stdout');
  t.equal(s.text(STREAM_STDERR), '', 'no stderr');

  // The pre-v4 protocol: the error channel carries text, nothing for success.
  url = await cri.exec({ container_id: c, cmd: ['sh', '-c', 'echo old; exit 4'], stdout: true, stderr: true });
  s = await StreamSession.connect(url, 'channel.k8s.io');
  t.equal(s.protocol, 'channel.k8s.io', 'subprotocol channel.k8s.io negotiated');
  await s.closed;
  t.equal(s.text(STREAM_STDOUT), 'old\n', 'channel.k8s.io: stdout');
  t.match(s.text(STREAM_ERROR), /exit code 4$/, 'channel.k8s.io: the error channel says exit code 4');

  // A terminal: resize on channel 4, the line discipline echoes stdin, CRLF output.
  const script = 'while :; do s=$(stty size 2>/dev/null); [ "$s" = "40 100" ] && break; sleep 0.05; done; echo "size:$s"; [ -t 0 ] && [ -t 1 ] && echo isatty; read l; echo "tty:$l"; exit 3';
  url = await cri.exec({ container_id: c, cmd: ['sh', '-c', script], stdin: true, stdout: true, tty: true });
  s = await StreamSession.connect(url);
  s.resize(100, 40);
  t.ok(await s.waitFor(STREAM_STDOUT, x => x.includes('isatty\r\n')), 'the resize reached the terminal (stty size 40 100) and stdin/stdout are a tty', { out: s.text(STREAM_STDOUT) });
  s.send(0, 'abc\r');
  status = await s.status();
  t.equal(statusExitCode(status), 3, 'tty exec: exit code 3', { status });
  t.equal(s.text(STREAM_STDOUT), 'size:40 100\r\nisatty\r\nabc\r\ntty:abc\r\n', 'tty output: echo of the input, CRLF line ends');
  t.equal(s.text(STREAM_STDERR), '', 'tty: nothing on stderr (one stream)');

  const st = await cri.containerStatus(c);
  t.equal(st.status.state, 'CONTAINER_RUNNING', 'the container kept running');
});

criScenario(t, 'Attach over websocket: stdin to the container, its stdout and stderr back, exit code, log file too', async (t, ctx) => {
  const { cri } = ctx;
  const pod = await ctx.runPod('attach');
  const c = await pod.run('c', { command: ['sh', '-c', 'read l; echo "got:$l"; echo "e:$l" >&2; exit 5'], stdin: true, stdinOnce: true });

  const url = await cri.attach({ container_id: c, stdin: true, stdout: true, stderr: true });
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/attach\/\S+$/, 'Attach returns a URL of the streaming server');
  const s = await StreamSession.connect(url);
  s.send(0, 'hi\n');
  t.ok(await s.waitFor(STREAM_STDOUT, x => x === 'got:hi\n'), 'stdin reached the container; stdout came back');
  t.ok(await s.waitFor(STREAM_STDERR, x => x === 'e:hi\n'), 'stderr came back');
  const status = await s.status();
  t.same(status, { metadata: {}, status: 'Success' }, 'attach ends with Success when the container exits');

  const st = await waitContainerState(cri, c, 'CONTAINER_EXITED');
  t.equal(st.state, 'CONTAINER_EXITED', 'the container exited');
  t.equal(st.exit_code, 5, 'exit code 5');
  const log = parseCriLog(await waitFor(() => {
    const text = fs.readFileSync(pod.logPath('c'), 'utf8');
    return text.split('\n').length >= 3 ? text : '';
  }));
  t.same(
    log.map(l => [l.stream, l.tag, l.text]).sort(),
    [
      ['stderr', 'F', 'e:hi'],
      ['stdout', 'F', 'got:hi'],
    ],
    'the attached output is in the container log too',
  );
});
