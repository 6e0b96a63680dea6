// Process lifecycle as explicit states with one transition table. Every illegal call is refused here.
import { Code, TtrpcError } from '../../framework/ttrpc/codes';

export interface ExitInfo {
  status: number;
  exitedAt: Date;
}

export type ProcessState =
  | { kind: 'created' }
  /** `runc start` is running; an exit seen now is held until TaskStart is published. */
  | { kind: 'starting'; heldExit?: ExitInfo }
  | { kind: 'running' }
  | { kind: 'stopped'; exit: ExitInfo; published: boolean }
  | { kind: 'deleted'; exit: ExitInfo };

export type StateKind = ProcessState['kind'];
export type Operation = 'start' | 'kill' | 'delete' | 'exec' | 'closeIO';

/** Which calls each state accepts, and the error for the ones it refuses. */
const REFUSALS: Record<StateKind, Partial<Record<Operation, [Code, string]>>> = {
  created: {},
  starting: {
    start: [Code.FailedPrecondition, 'process is already starting'],
    delete: [Code.FailedPrecondition, 'cannot delete a starting process'],
  },
  running: {
    start: [Code.FailedPrecondition, 'cannot start a running process'],
    delete: [Code.FailedPrecondition, 'cannot delete a running process'],
  },
  stopped: {
    start: [Code.FailedPrecondition, 'cannot start a stopped process'],
    kill: [Code.NotFound, 'process already finished'],
    exec: [Code.FailedPrecondition, 'cannot exec in a stopped container'],
  },
  deleted: {
    start: [Code.NotFound, 'process deleted'],
    kill: [Code.NotFound, 'process already finished'],
    delete: [Code.NotFound, 'process deleted'],
    exec: [Code.NotFound, 'process deleted'],
    closeIO: [Code.NotFound, 'process deleted'],
  },
};

/** Throws the state's refusal for `op`, if it has one. */
export function check(state: ProcessState, op: Operation): void {
  const refusal = REFUSALS[state.kind][op];
  if (refusal) throw new TtrpcError(refusal[0], refusal[1]);
}

/** containerd.v1.types.Status numbers. */
export const STATUS = { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 } as const;

export function statusOf(state: ProcessState): number {
  switch (state.kind) {
    case 'created':
    case 'starting':
      return STATUS.CREATED;
    case 'running':
      return STATUS.RUNNING;
    case 'stopped':
    case 'deleted':
      return STATUS.STOPPED;
  }
}

export function exitOf(state: ProcessState): ExitInfo | undefined {
  return state.kind === 'stopped' || state.kind === 'deleted' ? state.exit : undefined;
}
