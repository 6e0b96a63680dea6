// The one mapping from runc failures (and our own refusals) to ttrpc status codes.
import { Code, TtrpcError } from '../framework/ttrpc/codes';

export class RuncError extends Error {
  constructor(readonly command: string, readonly exitStatus: number, readonly runcMessage: string) {
    super(runcMessage || `runc ${command} exited with status ${exitStatus}`);
  }
}

/** runc's ErrNotExist ("container does not exist"), older runc's `container "x" does not exist`: "container" in the same clause. */
const CONTAINER_MISSING = /(^|: )container\b[^:]*\bdoes not exist/;

/** Classify what runc said into a status code containerd understands. */
export function codeForRuncMessage(msg: string): Code {
  const m = msg.toLowerCase();
  const has = (...phrases: string[]) => phrases.some((p) => m.includes(p));
  // Only the container being missing is NotFound: runc also says "does not exist" of what a spec names
  // (`namespace {"bogus" ""} does not exist`, a rootfs), which is a failed create, Unknown as in the Go shim.
  if (CONTAINER_MISSING.test(m) || has('container not found', 'no such process', 'container not running', 'process already finished', 'container is not running')) return Code.NotFound;
  if (has('already exists', 'id already in use', 'with id exists')) return Code.AlreadyExists;
  if (has('invalid container id', 'invalid argument', 'bad spec')) return Code.InvalidArgument;
  if (has('cannot start', 'cannot delete', 'cannot exec in a', 'not stopped', 'container paused', 'container not paused', 'container still running', 'container is paused')) {
    return Code.FailedPrecondition;
  }
  return Code.Unknown;
}

/** Wrap any failure of a runtime call as a TtrpcError carrying `what` as context, like the Go shim's "OCI runtime create failed: ...". */
export function runtimeError(err: unknown, what: string): TtrpcError {
  if (err instanceof TtrpcError) return err;
  if (err instanceof RuncError) return new TtrpcError(codeForRuncMessage(err.runcMessage), `${what}: ${err.message}`);
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return new TtrpcError(Code.NotFound, `${what}: ${e.message}`);
  if (e?.code === 'ETIMEDOUT') return new TtrpcError(Code.DeadlineExceeded, `${what}: ${e.message}`);
  return new TtrpcError(Code.Unknown, `${what}: ${e instanceof Error ? e.message : String(err)}`);
}

/**
 * Why `runc create` failed, as plainly as we can tell. A config.json that is not JSON is the caller's:
 * InvalidArgument, as a missing one is (the Go shim passes runc's bare "invalid character ..." on as
 * Unknown). Bundle state we could not write beside runc (a full or read-only bundle) is named: runc
 * could not write its log.json there either, so it said nothing we could read.
 */
export function createFailure(err: unknown, bundle: string, why: { specError?: Error; stateError?: unknown } = {}): TtrpcError {
  const e = runtimeError(err, 'OCI runtime create failed');
  if (why.specError) return invalidArgument(`bundle ${bundle}: config.json is not valid JSON (${why.specError.message}): ${e.message}`);
  if (why.stateError) return new TtrpcError(e.code, `${e.message} (${why.stateError instanceof Error ? why.stateError.message : String(why.stateError)})`);
  return e;
}

export const notFound = (what: string): TtrpcError => new TtrpcError(Code.NotFound, what);
export const alreadyExists = (what: string): TtrpcError => new TtrpcError(Code.AlreadyExists, what);
export const failedPrecondition = (what: string): TtrpcError => new TtrpcError(Code.FailedPrecondition, what);
export const invalidArgument = (what: string): TtrpcError => new TtrpcError(Code.InvalidArgument, what);
export const unimplemented = (what: string): TtrpcError => new TtrpcError(Code.Unimplemented, what);
