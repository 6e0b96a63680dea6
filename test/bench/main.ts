// `make bench`: runcts beside containerd's Go shim, in alternation, one containerd per mode
// (a plain one for the ctr figures, a CRI one for the pod figures), with the runc floor and,
// when grouping mode exists (or BENCH_GROUPED=1), "runcts grouped" for the CRI figures.
// Prints the machine, progress on stderr, and one table at the end; writes .bench/bench-results.json.
// Informative only: nothing asserts on time; a failing command is an error. See docs/benchmarks.md.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { busyboxRootfs, containerdDist, repoRoot, startContainerd, type Containerd } from '../integration/harness';
import * as ctr from './ctr';
import * as cri from './cri';
import { groupingMode, startBenchCri, type GroupingMode } from './cri-env';
import { FrozenShim } from './frozen-shim';
import { describeMachine, renderBusy, renderMachine } from './machine';
import { memoryFigures } from './memory';
import { RuncFloor } from './runc-floor';
import { stdoutFigures } from './stdout-throughput';
import { figuresJson, renderTable, writeResults, type Figure } from './table';
import { KNOBS, nowMs, phaseEnabled, progress, recordedErrors } from './util';

/** containerd's log level (BENCH_LOG_LEVEL; at debug, the shims' logs reach it too). */
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';

function resultsDir(): string {
  return path.join(repoRoot(), '.bench');
}

/** After a failure or a recorded error: containerd's log goes to .bench/containerd-<mode>.log before stop() removes it. */
function keepLog(cd: Containerd, mode: string): void {
  const file = path.join(resultsDir(), `containerd-${mode}.log`);
  try {
    fs.mkdirSync(resultsDir(), { recursive: true });
    fs.copyFileSync(cd.logPath, file);
    progress(`containerd log kept in ${file}`);
  } catch (e) {
    progress(`cannot keep containerd's log: ${(e as Error).message}`);
  }
}

/** ctr figures, the runc floor and stdout throughput on one plain containerd. */
async function ctrMode(figures: Figure[], frozen: FrozenShim | undefined): Promise<void> {
  const wanted = ['ctr', 'throughput', 'stdout'].filter(phaseEnabled);
  if (!wanted.length) return;
  progress('starting containerd (ctr mode)');
  const errorsBefore = recordedErrors().length;
  const cd = await startContainerd({ logLevel: LOG_LEVEL, version: KNOBS.containerd });
  frozen?.use(cd);
  const rootfs = await busyboxRootfs();
  const floor = await RuncFloor.create(rootfs);
  try {
    await cd.importBusybox();
    const ctx = { cd, rootfs, floor };
    if (phaseEnabled('ctr')) figures.push(...(await ctr.lifecycleFigures(ctx)), ...(await ctr.execFigures(ctx)));
    if (phaseEnabled('throughput')) figures.push(...(await ctr.throughputFigures(ctx)));
    if (phaseEnabled('stdout')) figures.push(...(await stdoutFigures(cd, rootfs)));
  } catch (e) {
    keepLog(cd, 'ctr');
    throw e;
  } finally {
    if (recordedErrors().length > errorsBefore) keepLog(cd, 'ctr');
    await floor.cleanup();
    for (const n of await cd.stop()) progress(`cleanup: ${n}`);
  }
}

/** CRI latency and memory figures on one CRI containerd (handlers runcts, runc, maybe runcts-grouped). */
async function criMode(figures: Figure[], grouping: GroupingMode, frozen: FrozenShim | undefined): Promise<void> {
  if (!phaseEnabled('cri') && !phaseEnabled('memory')) return;
  progress(`starting containerd (CRI mode${grouping.enabled ? ', with runcts-grouped' : ''})`);
  const errorsBefore = recordedErrors().length;
  const env = await startBenchCri(grouping, frozen, LOG_LEVEL);
  try {
    if (phaseEnabled('cri')) figures.push(...(await cri.lifecycleFigures(env)), ...(await cri.execSyncFigures(env)));
    if (phaseEnabled('memory')) figures.push(...(await memoryFigures(env)));
  } catch (e) {
    keepLog(env.env.cd, 'cri');
    throw e;
  } finally {
    if (recordedErrors().length > errorsBefore) keepLog(env.env.cd, 'cri');
    for (const n of await env.stop()) progress(`cleanup: ${n}`);
  }
}

/** ExecSync's floor is runc exec too: copy it over from the ctr exec figure. */
function linkExecFloor(figures: Figure[]): void {
  const floor = figures.find(f => f.name.startsWith('ctr task exec'))?.values.floor;
  const execSync = figures.find(f => f.name.startsWith('ExecSync'));
  if (floor !== undefined && execSync) {
    execSync.values.floor = floor;
    execSync.note = 'runc column: the `runc exec true` floor measured in the ctr section.';
  }
}

async function main(): Promise<void> {
  const t0 = nowMs();
  const machine = await describeMachine(await containerdDist(KNOBS.containerd));
  const grouping = groupingMode();
  console.log(renderMachine(machine));
  console.log(`knobs: ${JSON.stringify(KNOBS)}`);
  console.log(`runcts grouped: ${grouping.enabled ? `measured (${grouping.option})` : 'not measured'}: ${grouping.reason}`);
  for (const f of fs.existsSync(resultsDir()) ? fs.readdirSync(resultsDir()) : []) {
    if (/^containerd-.*\.log$/.test(f)) fs.rmSync(path.join(resultsDir(), f)); // a previous failure's
  }
  const frozen = process.env.BENCH_FROZEN === '0' ? undefined : await FrozenShim.create();
  console.log(`runcts shim: ${frozen ? frozen.describe() : 'the checkout itself (BENCH_FROZEN=0)'}`);
  const figures: Figure[] = [];
  let failure: unknown;
  try {
    await ctrMode(figures, frozen);
    await criMode(figures, grouping, frozen);
  } catch (e) {
    failure = e;
  } finally {
    frozen?.cleanup();
  }
  linkExecFloor(figures);
  const seconds = (nowMs() - t0) / 1000;
  console.log('');
  console.log(renderTable(figures));
  const loadAtEnd = os.loadavg();
  const errors = recordedErrors();
  for (const e of errors) console.log(`ERROR: ${e}`);
  console.log(`total time ${seconds.toFixed(0)} s${failure ? ' (FAILED: the table is incomplete)' : errors.length ? ` (FAILED: ${errors.length} error(s) above)` : ''}; cpu busy before the run: ${renderBusy(machine)}`);
  const file = writeResults(resultsDir(), {
    date: new Date().toISOString(),
    machine,
    knobs: KNOBS,
    grouping,
    durationS: seconds,
    loadAtEnd,
    complete: !failure,
    errors,
    figures: figuresJson(figures),
  });
  console.log(`results: ${path.relative(process.cwd(), file) || file}`);
  if (failure) throw failure;
  if (errors.length) process.exit(1);
}

main().catch(err => {
  console.error(err);
  process.exit(1);
});
