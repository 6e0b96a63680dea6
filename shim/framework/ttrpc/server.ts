// ttrpc server: unary request/response over stream sockets, many concurrent requests per
// connection, answered in completion order. Behaviour follows containerd/ttrpc 1.1 (server.go);
// see docs/ttrpc-protocol.md for the cases it answers with an error status.
import type * as net from 'node:net';
import { Code, TtrpcError, statusOf } from './codes';
import { FrameReader, MESSAGE_LENGTH_MAX, MessageType, encodeFrame, type FrameHeader } from './frame';
import { decodeRequest, encodeResponse, type RequestMessage, type StatusMessage } from './messages';

export interface CallContext {
  service: string;
  method: string;
  /** Request metadata: every KeyValue appended under its key, in wire order. */
  metadata: Map<string, string[]>;
  /** Absolute deadline (ms since the epoch) when the request carried timeout_nano != 0. */
  deadline?: number;
  /** Aborted at the deadline, and when the connection or the server closes. */
  signal: AbortSignal;
}

export type Handler = (payload: Buffer, ctx: CallContext) => Promise<Buffer>;

export interface Logger {
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface ServerOptions {
  logger?: Logger;
  /**
   * Called for every accepted connection before anything is read from it (the place for a
   * same-user peer credential check); a connection it refuses is destroyed.
   */
  accept?: (socket: net.Socket) => boolean;
}

const noopLogger: Logger = { warn() {}, debug() {} };

/** setTimeout's largest delay; longer deadlines re-arm. */
const MAX_TIMER_MS = 0x7fffffff;

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, Handler>>();
  private readonly listeners = new Set<net.Server>();
  private readonly connections = new Set<ServerConnection>();
  private shuttingDown = false;
  private idleWaiters: Array<() => void> = [];
  readonly logger: Logger;
  private readonly acceptFn: ((socket: net.Socket) => boolean) | undefined;

  constructor(opts: ServerOptions = {}) {
    this.logger = opts.logger ?? noopLogger;
    this.acceptFn = opts.accept;
  }

  /** Register a service's methods under its full name (e.g. "containerd.task.v2.Task"). */
  register(service: string, methods: Record<string, Handler>): void {
    if (this.services.has(service)) throw new Error(`duplicate service ${service} registered`);
    const table = new Map<string, Handler>();
    for (const [name, fn] of Object.entries(methods)) {
      if (typeof fn !== 'function') throw new TypeError(`ttrpc: handler for ${service}/${name} is not a function`);
      table.set(name, fn);
    }
    this.services.set(service, table);
  }

  /** Accept connections from an already listening net.Server (several may be served). */
  serve(listener: net.Server): void {
    if (this.shuttingDown) throw new Error('ttrpc: server closed');
    this.listeners.add(listener);
    listener.on('connection', (socket: net.Socket) => this.accept(socket));
    listener.on('error', (err: Error) => this.logger.warn({ err }, 'ttrpc: listener error'));
    listener.once('close', () => this.listeners.delete(listener));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Stop accepting, let every connection finish the requests it has in flight (and any it still
   * receives while busy), close each one once it is idle, and resolve when all are closed.
   */
  shutdown(): Promise<void> {
    this.shuttingDown = true;
    this.closeListeners();
    const done = new Promise<void>((resolve) => {
      if (this.connections.size === 0) resolve();
      else this.idleWaiters.push(resolve);
    });
    for (const c of [...this.connections]) c.closeIfIdle();
    return done;
  }

  /** Close listeners and every connection now; in-flight handlers see their signal aborted. */
  close(): void {
    this.shuttingDown = true;
    this.closeListeners();
    for (const c of [...this.connections]) c.destroy();
  }

  private closeListeners(): void {
    for (const l of this.listeners) {
      try {
        l.close();
      } catch (err) {
        this.logger.debug({ err }, 'ttrpc: closing listener');
      }
    }
    this.listeners.clear();
  }

  private accept(socket: net.Socket): void {
    socket.on('error', (err) => this.logger.debug({ err }, 'ttrpc: connection error'));
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    let ok = true;
    if (this.acceptFn) {
      try {
        ok = this.acceptFn(socket);
      } catch (err) {
        this.logger.warn({ err }, 'ttrpc: accept check threw');
        ok = false;
      }
    }
    if (!ok) {
      this.logger.warn({}, 'ttrpc: refusing connection');
      socket.destroy();
      return;
    }
    const conn = new ServerConnection(this, socket);
    this.connections.add(conn);
  }

  /** @internal */
  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** @internal */
  lookup(service: string, method: string): Handler | TtrpcError {
    const table = this.services.get(service);
    if (!table) return new TtrpcError(Code.Unimplemented, `service ${service}`);
    const fn = table.get(method);
    if (!fn) return new TtrpcError(Code.Unimplemented, `method ${method}`);
    return fn;
  }

  /** @internal */
  connectionClosed(conn: ServerConnection): void {
    this.connections.delete(conn);
    if (this.connections.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

class ServerConnection {
  private readonly reader = new FrameReader(MESSAGE_LENGTH_MAX);
  /** Requests read whose response is not yet written. */
  private inflight = 0;
  private readonly aborts = new Set<AbortController>();
  /** The peer sent EOF: no more requests will come. */
  private readEnded = false;
  private closing = false;
  private closed = false;
  private readPaused = false;

  constructor(
    private readonly server: TtrpcServer,
    private readonly socket: net.Socket,
  ) {
    // We decide when to end our side: after the last in-flight response, not at the peer's EOF.
    socket.allowHalfOpen = true;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.resumeReading());
  }

  private get log(): Logger {
    return this.server.logger;
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    for (const ev of this.reader.push(chunk)) {
      if (ev.kind === 'oversized') {
        // Answered at once; the reader discards the payload as it arrives.
        this.answerImmediately(ev.header.streamId, {
          code: Code.ResourceExhausted,
          message: `message length ${ev.header.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
        });
      } else {
        this.onFrame(ev.header, ev.payload);
      }
    }
  }

  private onFrame(header: FrameHeader, payload: Buffer): void {
    if (header.type !== MessageType.Request) {
      // Unknown (or streaming) message types are ignored for forward compatibility, as Go does.
      this.log.debug({ streamId: header.streamId, type: header.type }, 'ttrpc: ignoring frame of unexpected type');
      return;
    }
    let req: RequestMessage;
    try {
      req = decodeRequest(payload);
    } catch (err) {
      this.answerImmediately(header.streamId, {
        code: Code.InvalidArgument,
        message: `unmarshal request error: ${(err as Error).message}`,
      });
      return;
    }
    if (header.streamId % 2 !== 1) {
      this.answerImmediately(header.streamId, {
        code: Code.InvalidArgument,
        message: 'StreamID must be odd for client initiated streams',
      });
      return;
    }
    this.dispatch(header.streamId, req);
  }

  private answerImmediately(streamId: number, status: StatusMessage): void {
    this.inflight++;
    this.respond(streamId, status, undefined);
  }

  private dispatch(streamId: number, req: RequestMessage): void {
    this.inflight++;
    const found = this.server.lookup(req.service, req.method);
    if (found instanceof TtrpcError) {
      this.respond(streamId, { code: found.code, message: found.message }, undefined);
      return;
    }
    const abort = new AbortController();
    this.aborts.add(abort);
    const metadata = new Map<string, string[]>();
    for (const kv of req.metadata) {
      const list = metadata.get(kv.key);
      if (list) list.push(kv.value);
      else metadata.set(kv.key, [kv.value]);
    }
    const ctx: CallContext = { service: req.service, method: req.method, metadata, signal: abort.signal };
    let timer: NodeJS.Timeout | undefined;
    if (req.timeout_nano !== 0) {
      // Like Go's context.WithTimeout: a negative timeout is a deadline already passed.
      const deadline = Date.now() + req.timeout_nano / 1e6;
      ctx.deadline = deadline;
      const arm = (): void => {
        const left = deadline - Date.now();
        if (left <= 0) {
          abort.abort(new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded'));
          return;
        }
        timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
        timer.unref();
      };
      arm();
    }
    const finish = (status: StatusMessage, payload: Uint8Array | undefined): void => {
      if (timer) clearTimeout(timer);
      this.aborts.delete(abort);
      this.respond(streamId, status, payload);
    };
    const handler = found;
    new Promise<Buffer>((resolve) => resolve(handler(req.payload as Buffer, ctx)))
      .then(
        (out) => {
          if (!(out instanceof Uint8Array)) {
            finish({ code: Code.Internal, message: 'ttrpc: handler returned no payload' }, undefined);
            return;
          }
          finish({ code: Code.OK, message: '' }, out);
        },
        (err: unknown) => {
          const st = statusOf(err);
          if (st.code === Code.Unknown || st.code === Code.Internal) {
            this.log.debug({ err, service: req.service, method: req.method }, 'ttrpc: handler failed');
          }
          finish(st, undefined);
        },
      )
      .catch((err: unknown) => this.log.warn({ err }, 'ttrpc: failed to answer request'));
  }

  /** Write one response (as soon as it is ready, in completion order) and account for it. */
  private respond(streamId: number, status: StatusMessage, payload: Uint8Array | undefined): void {
    try {
      if (this.closed) return;
      let body = encodeResponse({ status, payload: payload ?? Buffer.alloc(0) });
      if (body.length > MESSAGE_LENGTH_MAX) {
        this.log.warn({ streamId, length: body.length }, 'ttrpc: response too large');
        body = encodeResponse({
          status: {
            code: Code.ResourceExhausted,
            message: `message length ${body.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`,
          },
          payload: Buffer.alloc(0),
        });
      }
      if (this.socket.writable) {
        // Backpressure: while the socket's buffer is over its high-water mark, stop reading new
        // requests; the responses already owed are all that is buffered.
        if (!this.socket.write(encodeFrame(streamId, MessageType.Response, body))) this.pauseReading();
      }
    } finally {
      this.inflight--;
      this.maybeEnd();
    }
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private resumeReading(): void {
    if (this.readPaused) {
      this.readPaused = false;
      if (!this.closed) this.socket.resume();
    }
  }

  private onEnd(): void {
    this.readEnded = true;
    if (this.reader.midFrame) this.log.debug({}, 'ttrpc: connection ended inside a frame');
    this.maybeEnd();
  }

  /** Server shutdown: close now if nothing is in flight, else once the last response is written. */
  closeIfIdle(): void {
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.closing || this.closed || this.inflight > 0) return;
    if (!this.readEnded && !this.server.isShuttingDown) return;
    this.closing = true;
    // Flush what is queued, then close the descriptor.
    this.socket.end(() => this.socket.destroy());
  }

  destroy(): void {
    this.closing = true;
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    const reason = new TtrpcError(Code.Canceled, 'ttrpc: connection closed');
    for (const a of this.aborts) a.abort(reason);
    this.aborts.clear();
    this.server.connectionClosed(this);
  }
}
