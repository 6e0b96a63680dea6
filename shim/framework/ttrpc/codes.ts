// grpc status codes (google.rpc.Code) as carried in ttrpc's Response.status, and the error type
// that carries one through our promises.

/** The grpc/google.rpc status codes. containerd maps these to its error kinds. */
export enum Code {
  OK = 0,
  Canceled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** Name of a code as grpc prints it ("NotFound"), or "Code(N)" for a value outside the enum. */
export function codeName(code: number): string {
  const name = (Code as unknown as Record<number, string | undefined>)[code];
  return typeof name === 'string' ? name : `Code(${code})`;
}

/**
 * An error with a status code. Handlers throw it to answer with that code; clients reject with
 * it when the server answered with a non-OK status or the call failed locally (timeout, closed).
 * `message` is the status message exactly as sent on the wire.
 */
export class TtrpcError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TtrpcError';
    this.code = code;
  }

  /** grpc's rendering, e.g. "rpc error: code = NotFound desc = container x". */
  override toString(): string {
    return `rpc error: code = ${codeName(this.code)} desc = ${this.message}`;
  }
}

export function isTtrpcError(err: unknown): err is TtrpcError {
  return err instanceof TtrpcError;
}

/** The status to answer with for whatever a handler threw: its own code, else Unknown. */
export function statusOf(err: unknown): { code: Code; message: string } {
  if (err instanceof TtrpcError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: Code.Unknown, message: err.message };
  return { code: Code.Unknown, message: String(err) };
}
