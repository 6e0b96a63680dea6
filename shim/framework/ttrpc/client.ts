// ttrpc client: one connection, many concurrent unary calls on odd, increasing stream ids.
import * as net from 'node:net';
import { Code, TtrpcError } from './codes';
import { FrameReader, MESSAGE_LENGTH_MAX, MessageType, UINT32_MAX, encodeFrame } from './frame';
import { decodeResponse, encodeRequest, type KeyValue } from './messages';

export interface ConnectOptions {
  /** Give up connecting after this long (DeadlineExceeded). */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Reject with DeadlineExceeded after this long; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  /** Sent as ttrpc metadata; an array sends one KeyValue per value. */
  metadata?: Record<string, string | string[]>;
  /** Abandon the call (rejects with Canceled); a late response is ignored. */
  signal?: AbortSignal;
}

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: TtrpcError): void;
}

/** Accepts "/path", "unix:///path" and abstract "\0name" / "unix://\0name". */
function socketPathOf(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

export class TtrpcClient {
  private readonly reader = new FrameReader(MESSAGE_LENGTH_MAX);
  private readonly pending = new Map<number, Pending>();
  private readonly closeCallbacks: Array<(err?: Error) => void> = [];
  private nextStreamId = 1;
  private isClosed = false;
  private lastError: Error | undefined;

  /** Wrap an already connected socket. */
  constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => {
      this.lastError = err;
    });
    // The server ending its side means no more responses will come.
    socket.on('end', () => this.teardown());
    socket.on('close', () => this.teardown());
    if (socket.destroyed) queueMicrotask(() => this.teardown());
  }

  static connect(address: string, opts: ConnectOptions = {}): Promise<TtrpcClient> {
    const path = socketPathOf(address);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      let timer: NodeJS.Timeout | undefined;
      const fail = (err: TtrpcError): void => {
        if (timer) clearTimeout(timer);
        socket.removeListener('connect', onConnect);
        socket.on('error', () => {});
        socket.destroy();
        reject(err);
      };
      const onError = (err: Error): void =>
        fail(new TtrpcError(Code.Unavailable, `ttrpc: connect ${path}: ${err.message}`, { cause: err }));
      const onConnect = (): void => {
        if (timer) clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(new TtrpcClient(socket));
      };
      socket.once('error', onError);
      socket.once('connect', onConnect);
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(
          () => fail(new TtrpcError(Code.DeadlineExceeded, `ttrpc: connect ${path}: timed out after ${opts.timeoutMs}ms`)),
          opts.timeoutMs,
        );
      }
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Number of calls awaiting their response. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** cb runs once, when the connection is closed (by either side); at once if it already is. */
  onClose(cb: (err?: Error) => void): void {
    if (this.isClosed) queueMicrotask(() => cb(this.lastError));
    else this.closeCallbacks.push(cb);
  }

  call(service: string, method: string, payload: Buffer, opts: CallOptions = {}): Promise<Buffer> {
    if (this.isClosed) return Promise.reject(closedError());
    if (opts.signal?.aborted) return Promise.reject(new TtrpcError(Code.Canceled, 'context canceled'));
    if (this.nextStreamId > UINT32_MAX) return Promise.reject(new TtrpcError(Code.Unavailable, 'ttrpc: stream ids exhausted'));

    if (opts.timeoutMs !== undefined && opts.timeoutMs <= 0) {
      return Promise.reject(new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded'));
    }

    const metadata: KeyValue[] = [];
    for (const [key, v] of Object.entries(opts.metadata ?? {})) {
      for (const value of Array.isArray(v) ? v : [v]) metadata.push({ key, value });
    }
    const timeoutMs = opts.timeoutMs;
    let body: Buffer;
    try {
      body = encodeRequest({
        service,
        method,
        payload,
        timeout_nano: timeoutMs !== undefined ? Math.round(timeoutMs * 1e6) : 0,
        metadata,
      });
    } catch (err) {
      return Promise.reject(new TtrpcError(Code.Internal, `ttrpc: failed to marshal request: ${(err as Error).message}`));
    }
    if (body.length > MESSAGE_LENGTH_MAX) {
      return Promise.reject(
        new TtrpcError(Code.ResourceExhausted, `message length ${body.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`),
      );
    }

    const id = this.nextStreamId;
    this.nextStreamId += 2;
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const signal = opts.signal;
      const onAbort = (): void => settle(new TtrpcError(Code.Canceled, 'context canceled'));
      const settle = (result: Buffer | TtrpcError): void => {
        if (!this.pending.delete(id)) return;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (result instanceof TtrpcError) reject(result);
        else resolve(result);
      };
      this.pending.set(id, { resolve: settle, reject: settle });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => settle(new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded')), timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      // Node buffers what the socket cannot take yet; each pending call owns one frame there.
      this.socket.write(encodeFrame(id, MessageType.Request, body));
    });
  }

  close(): void {
    this.teardown();
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    for (const ev of this.reader.push(chunk)) {
      const id = ev.header.streamId;
      const call = this.pending.get(id);
      if (!call) continue; // timed out or canceled: the late response is dropped
      if (ev.kind === 'oversized') {
        call.reject(
          new TtrpcError(Code.ResourceExhausted, `message length ${ev.header.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`),
        );
        continue;
      }
      if (ev.header.type !== MessageType.Response) continue;
      let res: ReturnType<typeof decodeResponse>;
      try {
        res = decodeResponse(ev.payload);
      } catch (err) {
        call.reject(new TtrpcError(Code.Internal, `ttrpc: failed to unmarshal response: ${(err as Error).message}`));
        continue;
      }
      if (res.status.code !== Code.OK) call.reject(new TtrpcError(res.status.code, res.status.message));
      else call.resolve(res.payload);
    }
  }

  private teardown(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.socket.destroy();
    const calls = [...this.pending.values()];
    for (const call of calls) call.reject(closedError(this.lastError));
    this.pending.clear();
    for (const cb of this.closeCallbacks.splice(0)) {
      try {
        cb(this.lastError);
      } catch {
        // a close callback must not break the others
      }
    }
  }
}

function closedError(cause?: Error): TtrpcError {
  return new TtrpcError(Code.Unavailable, 'ttrpc: closed', cause ? { cause } : undefined);
}
