// Reading ctr's task listings, in the forms every ctr version prints them.
import type { Containerd } from './containerd';
import { waitFor } from './proc';

export interface TaskRow {
  id: string;
  pid: number;
  status: string;
}

/** `ctr task ls` rows: TASK PID STATUS. */
export async function taskList(cd: Containerd): Promise<TaskRow[]> {
  const r = await cd.ctrOk(['task', 'ls']);
  return r.stdout
    .split('\n')
    .slice(1)
    .map(l => l.trim().split(/\s+/))
    .filter(f => f.length === 3)
    .map(([id, pid, status]) => ({ id: id!, pid: Number(pid), status: status! }));
}

export async function taskRow(cd: Containerd, id: string): Promise<TaskRow | undefined> {
  return (await taskList(cd)).find(r => r.id === id);
}

/**
 * `ctr task ps`: pid → exec id ('' for the init). The INFO column is the shim's ProcessDetails
 * as ctr formats it: `-` for the init, `&ProcessDetails{ExecID:e1,}` (ctr 1.6, 1.7) or
 * `exec_id:"e1"` (ctr 2.x) for an exec. Empty when ctr failed.
 */
export async function taskPs(cd: Containerd, id: string): Promise<Map<number, string>> {
  const r = await cd.ctr(['task', 'ps', id]);
  const m = new Map<number, string>();
  if (r.code !== 0) return m;
  for (const l of r.stdout.split('\n').slice(1)) {
    const [pid, ...rest] = l.trim().split(/\s+/);
    if (!(Number(pid) > 0)) continue;
    const info = rest.join(' ');
    const exec = /ExecID:([^,}\s]+)/.exec(info) ?? /exec_id:"([^"]*)"/.exec(info);
    m.set(Number(pid), exec?.[1] ?? '');
  }
  return m;
}

/** SIGKILL the task, wait until it is STOPPED; true when it got there within timeoutMs. */
export async function killTask(cd: Containerd, id: string, timeoutMs = 15_000): Promise<boolean> {
  await cd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  return waitFor(async () => (await taskRow(cd, id))?.status === 'STOPPED', { timeoutMs, intervalMs: 100 });
}
