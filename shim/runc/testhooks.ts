// Test-only delays that widen race windows so the ordering tests hit every race on every run.
// Read from the shim's environment (containerd passes its own on); all zero, i.e. off, by default.
export type DelayPoint = 'AFTER_RUNC_START' | 'AFTER_RUNC_EXEC' | 'EXEC_EXIT';

// Read at first use, not at load: a startup snapshot would otherwise keep its build's environment.
let delays: Record<DelayPoint, number> | undefined;

function configured(): Record<DelayPoint, number> {
  delays ??= {
    AFTER_RUNC_START: readMs('RUNCTS_TEST_DELAY_AFTER_RUNC_START_MS'),
    AFTER_RUNC_EXEC: readMs('RUNCTS_TEST_DELAY_AFTER_RUNC_EXEC_MS'),
    EXEC_EXIT: readMs('RUNCTS_TEST_DELAY_EXEC_EXIT_MS'),
  };
  return delays;
}

function readMs(name: string): number {
  const v = Number(process.env[name] ?? 0);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/** Resolves after the configured delay; resolves at once (same tick semantics as any await) when off. */
export function testDelay(point: DelayPoint): Promise<void> | undefined {
  const ms = configured()[point];
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : undefined;
}
