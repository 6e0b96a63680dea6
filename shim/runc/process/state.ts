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
  /** `runc pause` is running (init only); an exit seen now is held until the freeze settled. */
  | { kind: 'pausing'; heldExit?: ExitInfo }
  /** The container's cgroup is frozen (init only). */
  | { kind: 'paused' }
  | { kind: 'stopped'; exit: ExitInfo; published: boolean }
  | { kind: 'deleted'; exit: ExitInfo };

export type StateKind = ProcessState['kind'];
export type Operation = 'start' | 'kill' | 'delete' | 'exec' | 'closeIO' | 'pause' | 'resume' | 'update' | 'checkpoint';

/** Which calls each state accepts, and the error for the ones it refuses. */
const REFUSALS: Record<StateKind, Partial<Record<Operation, [Code, string]>>> = {
  created: {
    pause: [Code.FailedPrecondition, 'cannot pause a container that has not started'],
    resume: [Code.FailedPrecondition, 'cannot resume a container that is not paused'],
    checkpoint: [Code.FailedPrecondition, 'cannot checkpoint a container that has not started'],
  },
  starting: {
    start: [Code.FailedPrecondition, 'process is already starting'],
    delete: [Code.FailedPrecondition, 'cannot delete a starting process'],
    pause: [Code.FailedPrecondition, 'cannot pause a starting container'],
    resume: [Code.FailedPrecondition, 'cannot resume a container that is not paused'],
    checkpoint: [Code.FailedPrecondition, 'cannot checkpoint a starting container'],
  },
  running: {
    start: [Code.FailedPrecondition, 'cannot start a running process'],
    delete: [Code.FailedPrecondition, 'cannot delete a running process'],
    resume: [Code.FailedPrecondition, 'cannot resume a running container'],
  },
  pausing: {
    start: [Code.FailedPrecondition, 'cannot start a pausing process'],
    delete: [Code.FailedPrecondition, 'cannot delete a pausing process'],
    exec: [Code.FailedPrecondition, 'cannot exec in a pausing container'],
    pause: [Code.FailedPrecondition, 'container is already pausing'],
    resume: [Code.FailedPrecondition, 'cannot resume a container that is still pausing'],
    checkpoint: [Code.FailedPrecondition, 'cannot checkpoint a pausing container'],
  },
  paused: {
    start: [Code.FailedPrecondition, 'cannot start a paused process'],
    delete: [Code.FailedPrecondition, 'cannot delete a paused process'],
    exec: [Code.FailedPrecondition, 'cannot exec in a paused container'],
    pause: [Code.FailedPrecondition, 'container is already paused'],
  },
  stopped: {
    start: [Code.FailedPrecondition, 'cannot start a stopped process'],
    kill: [Code.NotFound, 'process already finished'],
    exec: [Code.FailedPrecondition, 'cannot exec in a stopped container'],
    pause: [Code.FailedPrecondition, 'cannot pause a stopped container'],
    resume: [Code.FailedPrecondition, 'cannot resume a stopped container'],
    update: [Code.FailedPrecondition, 'cannot update a stopped container'],
    checkpoint: [Code.FailedPrecondition, 'cannot checkpoint a stopped container'],
  },
  deleted: {
    start: [Code.NotFound, 'process deleted'],
    kill: [Code.NotFound, 'process already finished'],
    delete: [Code.NotFound, 'process deleted'],
    exec: [Code.NotFound, 'process deleted'],
    closeIO: [Code.NotFound, 'process deleted'],
    pause: [Code.NotFound, 'process deleted'],
    resume: [Code.NotFound, 'process deleted'],
    update: [Code.NotFound, 'process deleted'],
    checkpoint: [Code.NotFound, 'process deleted'],
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
    case 'pausing':
      return STATUS.PAUSING;
    case 'paused':
      return STATUS.PAUSED;
    case 'stopped':
    case 'deleted':
      return STATUS.STOPPED;
  }
}

export function exitOf(state: ProcessState): ExitInfo | undefined {
  return state.kind === 'stopped' || state.kind === 'deleted' ? state.exit : undefined;
}
