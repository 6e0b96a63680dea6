// tap glue: one private containerd per scenario and runtime, a leak check after every scenario,
// containerd's log tail printed when something failed.
import type { Test } from 'tap';
import { Containerd, ContainerdOptions, runtimesUnderTest, startContainerd } from './containerd';
import { assertNoLeaks, leakSnapshot } from './leaks';
import { describeResult, RunResult } from './proc';

export interface ScenarioContext {
  cd: Containerd;
  /** The runtime type under test, for `ctr run --runtime`. */
  runtime: string;
  /** Container ids the scenario used (the leak check looks for their shim sockets). */
  ids: string[];
  /** A fresh container id with this prefix, recorded in ids. */
  id(prefix: string): string;
}

export interface ScenarioOptions {
  /** Runtimes to run the scenario for (default: runtimesUnderTest(), i.e. both). */
  runtimes?: readonly string[];
  containerd?: ContainerdOptions;
  /** Import the busybox image first (default true). */
  image?: boolean;
  /** tap timeout for each runtime's subtest (default 240 s). */
  timeoutMs?: number;
}

/** Print containerd's log tail (and a note) into the TAP stream. */
export function dumpContainerdLog(t: Test, cd: Containerd, lines = 80): void {
  t.comment(`containerd log tail (${cd.logPath}):\n${cd.logTail(lines)}`);
}

/**
 * Start a containerd for test t; it is stopped in t's teardown, and its log tail is printed
 * when t has failed.
 */
export async function useContainerd(t: Test, opts: ContainerdOptions = {}): Promise<Containerd> {
  const cd = await startContainerd(opts);
  t.teardown(async () => {
    if (!t.passing()) dumpContainerdLog(t, cd);
    const notes = await cd.stop();
    for (const n of notes) t.comment(`cleanup: ${n}`);
  });
  return cd;
}

/**
 * Define `name` once per runtime as subtests named "<runtime>: <name>". Each gets its own
 * containerd (so one runtime's leftovers never fail the other's checks), the busybox image,
 * and a leak check after fn.
 */
export function scenario(t: Test, name: string, fn: (t: Test, ctx: ScenarioContext) => Promise<void>, opts: ScenarioOptions = {}): void {
  for (const runtime of opts.runtimes ?? runtimesUnderTest()) {
    void t.test(`${runtime}: ${name}`, { timeout: opts.timeoutMs ?? 240_000 }, async t => {
      const cd = await useContainerd(t, opts.containerd);
      if (opts.image ?? true) await cd.importBusybox();
      let n = 0;
      const ctx: ScenarioContext = {
        cd,
        runtime,
        ids: [],
        id(prefix: string): string {
          const id = `${prefix}-${++n}-${process.pid}`;
          ctx.ids.push(id);
          return id;
        },
      };
      const before = leakSnapshot();
      try {
        await fn(t, ctx);
      } finally {
        await assertNoLeaks(t, cd, before, { ids: ctx.ids });
      }
    });
  }
}

/** Assert a ctr result's exit code, with the full result in the message on failure. */
export function expectCode(t: Test, r: RunResult, code: number, what: string): boolean {
  return t.equal(r.code, code, `${what}: exit code ${code}`, { result: describeResult(r) });
}
