// The one mapping from runc failures (and our own refusals) to ttrpc status codes.
import { Code, TtrpcError } from '../framework/ttrpc/codes';

export class RuncError extends Error {
  constructor(readonly command: string, readonly exitStatus: number, readonly runcMessage: string) {
    super(runcMessage || `runc ${command} exited with status ${exitStatus}`);
  }
}

/** Classify what runc said into a status code containerd understands. */
export function codeForRuncMessage(msg: string): Code {
  const m = msg.toLowerCase();
  const has = (...phrases: string[]) => phrases.some((p) => m.includes(p));
  if (has('does not exist', 'container not found', 'no such process', 'container not running', 'process already finished', 'container is not running')) return Code.NotFound;
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

export const notFound = (what: string): TtrpcError => new TtrpcError(Code.NotFound, what);
export const alreadyExists = (what: string): TtrpcError => new TtrpcError(Code.AlreadyExists, what);
export const failedPrecondition = (what: string): TtrpcError => new TtrpcError(Code.FailedPrecondition, what);
export const invalidArgument = (what: string): TtrpcError => new TtrpcError(Code.InvalidArgument, what);
export const unimplemented = (what: string): TtrpcError => new TtrpcError(Code.Unimplemented, what);
