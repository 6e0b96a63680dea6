// Issue "stdio done properly": terminals. `ctr run -t` and `ctr task exec -t` on a real pty
// (python3's pty module, see harness/stdio.ts): the pty's size reaches the container (ctr sends
// it with ResizePty, again on SIGWINCH), an interactive shell answers what is typed, and the
// exit code comes back through ctr. Through containerd's Tasks API: an exec whose request and
// process spec disagree on `terminal` (ctr never sends that) runs as the request says. For the Go
// shim and for ours. See docs/stdio-tests.md.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import {
  BUSYBOX_IMAGE, Containerd, expectCode, PROCESS_SPEC_URL, PtyProcess, ptyCtr, PtyResult, run, scenario, useTasksApi,
} from './harness';

const ROWS = 40;
const COLS = 120;

// ctr 1.6 puts no console size in the spec: the container's pty starts at 0x0 and gets its size
// from ctr's first ResizePty, which ctr sends only after Start. So the first `stty size` may
// still see 0x0 (busybox then prints "stty: standard input" on stderr and nothing on stdout),
// for the Go shim as for ours. Poll (up to 5 s) until the size is set, then print it.
const STTY_AFTER_RESIZE =
  'i=0; until stty size 2>/dev/null | grep -q "^[1-9]" || [ $i -ge 100 ]; do sleep 0.05; i=$((i+1)); done; echo "polls=$i"; stty size; echo done';

function describePty(r: PtyResult): string {
  const how = r.timedOut ? 'TIMED OUT' : r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
  return `${how}; pty output: ${JSON.stringify(r.output)}`;
}

/** `stty size` prints the pty size once ctr forwarded it. */
async function checkSize(t: Test, p: PtyProcess, what: string): Promise<void> {
  const r = await p.result();
  t.equal(r.code, 0, `${what}: exit 0`, { pty: describePty(r) });
  const m = /polls=(\d+)\r*\n(\d+) (\d+)\r*\ndone\r*\n/.exec(r.output);
  if (!t.ok(m, `${what}: stty size printed`, { pty: describePty(r) })) return;
  t.equal(`${m![2]} ${m![3]}`, `${ROWS} ${COLS}`, `${what}: stty size is the pty's ${ROWS}x${COLS}`);
  t.comment(`${what}: size seen after ${m![1]} polls of 50 ms`);
}

/**
 * An interactive shell on the pty: a command typed is run (its answer is computed, so the echo of
 * the typed line cannot match), `stty size` is the pty size, a resize of the outer pty reaches
 * the container, and `exit N` ends ctr with N.
 */
async function interact(t: Test, p: PtyProcess, what: string, exitCode: number): Promise<void> {
  const fail = async (msg: string): Promise<void> => {
    p.kill();
    const r = await p.result();
    t.fail(`${what}: ${msg}`, { pty: describePty(r) });
  };
  let pos = await p.waitFor('# ', 15_000);
  if (pos === undefined) return fail('no shell prompt');
  p.type('echo hi-$((6*7))\r');
  pos = await p.waitFor(/hi-42\r*\n/, 10_000, pos);
  if (!t.ok(pos !== undefined, `${what}: typed command ran and answered`)) return fail('no answer to echo');
  // The size may still be 0x0 right after start (see STTY_AFTER_RESIZE): ask until it is set.
  let size: string | undefined;
  for (let i = 0; i < 20 && size === undefined; i++) {
    p.type('stty size 2>/dev/null || echo "no""size"\r'); // the typed line's echo must not match
    const at = await p.waitFor(/(\d+ \d+|nosize)\r*\n/, 5_000, pos);
    if (at === undefined) break;
    const m = /(\d+ \d+|nosize)\r*\n/.exec(p.output.slice(pos));
    pos = at;
    if (m && m[1] !== 'nosize' && m[1] !== '0 0') size = m[1];
  }
  t.equal(size, `${ROWS} ${COLS}`, `${what}: stty size in the shell is ${ROWS}x${COLS}`);
  // Resize the outer pty: the kernel sends ctr SIGWINCH, ctr sends ResizePty, the shim resizes
  // the container's pty.
  p.resize(50, 132);
  let resized = false;
  for (let i = 0; i < 20 && !resized; i++) {
    p.type('stty size\r');
    const at = await p.waitFor(/\d+ \d+\r*\n/, 5_000, pos);
    if (at === undefined) break;
    resized = /50 132\r*\n/.test(p.output.slice(pos, at));
    pos = at;
    if (!resized) await new Promise(res => setTimeout(res, 100));
  }
  t.ok(resized, `${what}: a resize of the outer pty reaches the container (50x132)`);
  p.type(`exit ${exitCode}\r`);
  const r = await p.result();
  t.equal(r.code, exitCode, `${what}: exit ${exitCode} comes back through ctr`, { pty: describePty(r) });
}

async function removeContainer(t: Test, cd: Containerd, id: string): Promise<void> {
  expectCode(t, await cd.ctr(['task', 'delete', '--force', id], { timeoutMs: 30_000 }), 0, 'ctr task delete --force');
  expectCode(t, await cd.ctr(['container', 'delete', id]), 0, 'ctr container delete');
}

scenario(t, 'ctr run -t: pty size, interactive shell, resize, exit code', async (t, { cd, runtime, id }) => {
  const size = ptyCtr(cd, ['run', '-t', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('tty-size'), 'sh', '-c', STTY_AFTER_RESIZE], { rows: ROWS, cols: COLS, timeoutMs: 30_000 });
  await checkSize(t, size, 'ctr run -t');
  const sh = ptyCtr(cd, ['run', '-t', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id('tty-sh'), 'sh'], { rows: ROWS, cols: COLS, timeoutMs: 60_000 });
  await interact(t, sh, 'ctr run -t sh', 7);
});

scenario(t, 'ctr task exec -t: pty size, interactive shell, resize, exit code', async (t, { cd, runtime, id }) => {
  const cid = id('tty-exec');
  const run = await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, cid, 'sleep', '1000']);
  if (!expectCode(t, run, 0, 'ctr run -d sleep')) return;
  try {
    const size = ptyCtr(cd, ['task', 'exec', '-t', '--exec-id', 'size', cid, 'sh', '-c', STTY_AFTER_RESIZE], { rows: ROWS, cols: COLS, timeoutMs: 30_000 });
    await checkSize(t, size, 'ctr task exec -t');
    const sh = ptyCtr(cd, ['task', 'exec', '-t', '--exec-id', 'sh', cid, 'sh'], { rows: ROWS, cols: COLS, timeoutMs: 60_000 });
    await interact(t, sh, 'ctr task exec -t sh', 5);
  } finally {
    await removeContainer(t, cd, cid);
  }
});

/** Everything written into a fifo until its last writer closes it; unblock() ends a read no writer ever came for. */
function readFifo(file: string): { data: Promise<Buffer>; unblock(): void } {
  const chunks: Buffer[] = [];
  const data = new Promise<Buffer>((resolve, reject) => {
    fs.createReadStream(file).on('data', (c: Buffer | string) => chunks.push(Buffer.from(c))).on('end', () => resolve(Buffer.concat(chunks))).on('error', reject);
  });
  return {
    data,
    unblock: () => {
      // The reader's open is pending in the threadpool: a writer that comes and goes gives it EOF.
      try {
        fs.closeSync(fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch { /* ENXIO: the reader is already gone */ }
    },
  };
}

const LINES = 200_000;

// containerd passes an exec's `terminal` and its process spec to the shim as the client sent them.
// The request's flag decides the stdio (a pty through runc's console socket, or pipes), and runc
// refuses a console socket for a spec without a terminal ("cannot use console socket if runc will
// not detach or allocate tty"), and a terminal without one: the Go shim sets the spec's terminal
// from the request. Each exec prints whether it has a tty, then 200 000 lines (1.3 MB).
scenario(t, 'Tasks.Exec: the request\'s terminal flag decides, whatever the spec says; all of a large output', async (t, { cd, runtime, id }) => {
  const cid = id('tty-flags');
  if (!expectCode(t, await cd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, cid, 'sleep', '1000']), 0, 'ctr run -d sleep')) return;
  const api = useTasksApi(t, cd);
  try {
    const cases: Array<{ request: boolean; spec: boolean }> = [
      { request: true, spec: false },
      { request: true, spec: true },
      { request: false, spec: true },
    ];
    for (const c of cases) {
      const execId = `req-${c.request}-spec-${c.spec}`;
      const what = `request terminal=${c.request}, spec terminal=${c.spec}`;
      const out = path.join(cd.dir, `${execId}.out`);
      await run('mkfifo', [out]);
      const output = readFifo(out);
      const spec = {
        terminal: c.spec, user: { uid: 0, gid: 0 }, cwd: '/', env: ['PATH=/bin:/sbin:/usr/bin'],
        args: ['sh', '-c', `tty; seq 1 ${LINES}`],
      };
      const exec = await api.call('Exec', {
        container_id: cid, exec_id: execId, terminal: c.request, stdin: '', stdout: out, stderr: c.request ? '' : out,
        spec: { type_url: PROCESS_SPEC_URL, value: Buffer.from(JSON.stringify(spec)) },
      });
      const start = exec.err ? exec : await api.call('Start', { container_id: cid, exec_id: execId });
      if (!t.notOk(start.err, `${what}: Exec and Start succeed`, { err: start.err })) {
        output.unblock();
        await api.call('DeleteProcess', { container_id: cid, exec_id: execId });
        continue;
      }
      const wait = await api.call<{ exit_status: number }>('Wait', { container_id: cid, exec_id: execId }, 60_000);
      t.equal(wait.res?.exit_status, 0, `${what}: exit 0`, { err: wait.err });
      // The Go shim closes the output once the exec is deleted (its copy may still run after Wait).
      const del = await api.call('DeleteProcess', { container_id: cid, exec_id: execId });
      t.notOk(del.err, `${what}: DeleteProcess`, { err: del.err });
      const lines = (await output.data).toString('utf8').split(/\r?\n/);
      t.match(lines[0], c.request ? /^\/dev\/pts\/\d+$/ : /^not a tty$/, `${what}: ${c.request ? 'on a pty' : 'on pipes'} (${lines[0]})`);
      const numbers = lines.slice(1).filter((l) => l !== '');
      t.ok(numbers.length === LINES && numbers.every((l, i) => l === String(i + 1)), `${what}: all ${LINES} lines, in order`, {
        count: numbers.length, last: numbers.slice(-3),
      });
    }
  } finally {
    await removeContainer(t, cd, cid);
  }
});
