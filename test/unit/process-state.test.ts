// The process state table: every state x every operation, which calls are refused and with which
// status code and message; statusOf/exitOf for every state.
import t from 'tap';
import { STATUS, check, exitOf, statusOf, type ExitInfo, type Operation, type ProcessState, type StateKind } from '../../shim/runc/process/state';
import { Code, TtrpcError, codeName } from '../../shim/framework/ttrpc';
import { protoRoot } from '../../shim/framework/proto';

const exit: ExitInfo = { status: 137, exitedAt: new Date('2026-01-02T03:04:05.678Z') };

const STATES: Record<StateKind, ProcessState> = {
  created: { kind: 'created' },
  starting: { kind: 'starting' },
  running: { kind: 'running' },
  pausing: { kind: 'pausing' },
  paused: { kind: 'paused' },
  stopped: { kind: 'stopped', exit, published: true },
  deleted: { kind: 'deleted', exit },
};
const OPERATIONS: Operation[] = ['start', 'kill', 'delete', 'exec', 'closeIO', 'pause', 'resume', 'update', 'checkpoint'];

const FP = Code.FailedPrecondition;
const NF = Code.NotFound;
/** null: allowed. [code, message]: refused with exactly that. */
const TABLE: Record<StateKind, Record<Operation, null | [Code, string]>> = {
  created: {
    start: null, kill: null, delete: null, exec: null, closeIO: null,
    pause: [FP, 'cannot pause a container that has not started'],
    resume: [FP, 'cannot resume a container that is not paused'],
    update: null, // as the Go shim: resources may change before start
    checkpoint: [FP, 'cannot checkpoint a container that has not started'],
  },
  starting: {
    start: [FP, 'process is already starting'],
    kill: null,
    delete: [FP, 'cannot delete a starting process'],
    exec: null,
    closeIO: null,
    pause: [FP, 'cannot pause a starting container'],
    resume: [FP, 'cannot resume a container that is not paused'],
    update: null,
    checkpoint: [FP, 'cannot checkpoint a starting container'],
  },
  running: {
    start: [FP, 'cannot start a running process'],
    kill: null,
    delete: [FP, 'cannot delete a running process'],
    exec: null,
    closeIO: null,
    pause: null,
    resume: [FP, 'cannot resume a running container'],
    update: null,
    checkpoint: null,
  },
  pausing: {
    start: [FP, 'cannot start a pausing process'],
    kill: null,
    delete: [FP, 'cannot delete a pausing process'],
    exec: [FP, 'cannot exec in a pausing container'],
    closeIO: null,
    pause: [FP, 'container is already pausing'],
    resume: [FP, 'cannot resume a container that is still pausing'],
    update: null,
    checkpoint: [FP, 'cannot checkpoint a pausing container'],
  },
  paused: {
    start: [FP, 'cannot start a paused process'],
    kill: null, // as the Go shim: a paused container can be killed
    delete: [FP, 'cannot delete a paused process'],
    exec: [FP, 'cannot exec in a paused container'],
    closeIO: null,
    pause: [FP, 'container is already paused'],
    resume: null,
    update: null,
    checkpoint: null,
  },
  stopped: {
    start: [FP, 'cannot start a stopped process'],
    kill: [NF, 'process already finished'],
    delete: null,
    exec: [FP, 'cannot exec in a stopped container'],
    closeIO: null, // as the Go shim: closing stdin of a finished process is harmless
    pause: [FP, 'cannot pause a stopped container'],
    resume: [FP, 'cannot resume a stopped container'],
    update: [FP, 'cannot update a stopped container'],
    checkpoint: [FP, 'cannot checkpoint a stopped container'],
  },
  deleted: {
    start: [NF, 'process deleted'],
    kill: [NF, 'process already finished'],
    delete: [NF, 'process deleted'],
    exec: [NF, 'process deleted'],
    closeIO: [NF, 'process deleted'],
    pause: [NF, 'process deleted'],
    resume: [NF, 'process deleted'],
    update: [NF, 'process deleted'],
    checkpoint: [NF, 'process deleted'],
  },
};

function outcome(state: ProcessState, op: Operation): null | [string, string] | string {
  try {
    check(state, op);
    return null;
  } catch (err) {
    if (!(err instanceof TtrpcError)) return `not a TtrpcError: ${String(err)}`;
    return [codeName(err.code), err.message];
  }
}

t.test('every state x operation: allowed or refused with the exact code and message', async (t) => {
  for (const kind of Object.keys(TABLE) as StateKind[]) {
    for (const op of OPERATIONS) {
      const want = TABLE[kind][op];
      t.same(outcome(STATES[kind], op), want === null ? null : [codeName(want[0]), want[1]], `${kind} x ${op}`);
    }
  }
});

t.test('the table covers 7 states x 9 operations, and refusals only use NotFound or FailedPrecondition', async (t) => {
  t.equal(Object.keys(TABLE).length * OPERATIONS.length, 63);
  const codes = new Set<string>();
  for (const kind of Object.keys(STATES) as StateKind[]) {
    for (const op of OPERATIONS) {
      const o = outcome(STATES[kind], op);
      if (Array.isArray(o)) codes.add(o[0]);
      t.not(typeof o, 'string', `${kind} x ${op} throws only TtrpcError`);
    }
  }
  t.same([...codes].sort(), ['FailedPrecondition', 'NotFound']);
});

t.test('the refusal does not depend on the state\'s payload', async (t) => {
  // starting with a held exit refuses/permits exactly like starting without one
  const held: ProcessState = { kind: 'starting', heldExit: exit };
  const heldPausing: ProcessState = { kind: 'pausing', heldExit: exit };
  const neverStarted: ProcessState = { kind: 'stopped', exit, published: false };
  for (const op of OPERATIONS) {
    t.same(outcome(held, op), outcome(STATES.starting, op), `starting+heldExit x ${op}`);
    t.same(outcome(heldPausing, op), outcome(STATES.pausing, op), `pausing+heldExit x ${op}`);
    t.same(outcome(neverStarted, op), outcome(STATES.stopped, op), `stopped(never started) x ${op}`);
  }
});

t.test('a refused call leaves the state object untouched', async (t) => {
  const s: ProcessState = { kind: 'stopped', exit, published: true };
  const snapshot = JSON.stringify(s);
  t.throws(() => check(s, 'start'));
  t.equal(JSON.stringify(s), snapshot);
});

t.test('deleted is terminal: every operation is refused with NotFound', async (t) => {
  for (const op of OPERATIONS) {
    const o = outcome(STATES.deleted, op);
    t.ok(Array.isArray(o) && o[0] === 'NotFound', `deleted x ${op}`);
  }
});

t.test('STATUS numbers are containerd.v1.types.Status', async (t) => {
  t.same(STATUS, { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 });
  t.same(protoRoot().lookupEnum('containerd.v1.types.Status').values, { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 });
});

t.test('statusOf: what containerd sees for each state', async (t) => {
  t.equal(statusOf(STATES.created), STATUS.CREATED);
  t.equal(statusOf(STATES.starting), STATUS.CREATED, 'not RUNNING until start returned');
  t.equal(statusOf({ kind: 'starting', heldExit: exit }), STATUS.CREATED, 'a held exit is not visible yet');
  t.equal(statusOf(STATES.running), STATUS.RUNNING);
  t.equal(statusOf(STATES.pausing), STATUS.PAUSING);
  t.equal(statusOf({ kind: 'pausing', heldExit: exit }), STATUS.PAUSING, 'an exit held while pausing is not visible yet');
  t.equal(statusOf(STATES.paused), STATUS.PAUSED);
  t.equal(statusOf(STATES.stopped), STATUS.STOPPED);
  t.equal(statusOf({ kind: 'stopped', exit, published: false }), STATUS.STOPPED);
  t.equal(statusOf(STATES.deleted), STATUS.STOPPED);
});

t.test('exitOf: only stopped and deleted have an exit; the held exit of starting is not exposed', async (t) => {
  t.equal(exitOf(STATES.created), undefined);
  t.equal(exitOf(STATES.starting), undefined);
  t.equal(exitOf({ kind: 'starting', heldExit: exit }), undefined);
  t.equal(exitOf(STATES.running), undefined);
  t.equal(exitOf({ kind: 'pausing', heldExit: exit }), undefined);
  t.equal(exitOf(STATES.paused), undefined);
  t.equal(exitOf(STATES.stopped), exit);
  t.equal(exitOf(STATES.deleted), exit);
  const other: ExitInfo = { status: 0, exitedAt: new Date(0) };
  t.same(exitOf({ kind: 'stopped', exit: other, published: false }), { status: 0, exitedAt: new Date(0) });
});
