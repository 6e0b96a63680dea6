// Whether criu can checkpoint on this machine: `criu check`, asked once per shim and remembered.
import type { Reaper } from '../framework/reaper';
import { runCommand } from './command';

export interface CriuStatus {
  usable: boolean;
  /** criu's first error line when it is not usable. */
  reason: string;
}

const CHECK_DEADLINE_MS = 10_000;
const checked = new Map<string, Promise<CriuStatus>>();

export function criuStatus(reaper: Reaper, binary = 'criu'): Promise<CriuStatus> {
  let status = checked.get(binary);
  if (!status) {
    status = check(reaper, binary);
    checked.set(binary, status);
  }
  return status;
}

async function check(reaper: Reaper, binary: string): Promise<CriuStatus> {
  try {
    const r = await runCommand(reaper, { file: binary, args: ['check'], capture: 'both', deadlineMs: CHECK_DEADLINE_MS });
    if (r.status === 0) return { usable: true, reason: '' };
    const lines = r.output.split('\n').map((l) => l.trim()).filter(Boolean);
    const reason = lines.find((l) => /error/i.test(l)) ?? lines[0] ?? `criu check exited with status ${r.status}`;
    return { usable: false, reason: r.timedOut ? 'criu check did not finish' : reason };
  } catch (err) {
    return { usable: false, reason: `${binary}: ${(err as Error).message}` };
  }
}
