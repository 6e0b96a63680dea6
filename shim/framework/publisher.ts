// Event outbox: one FIFO, one forwarder, to containerd's Events/Forward over ttrpc.
//
// Invariants:
// - Events leave in exactly the order publish() was called (one queue, one call in flight).
// - An event is never dropped because containerd is unreachable: the forwarder reconnects with
//   backoff and retries the head of the queue until it is delivered or the shim is told to stop.
// - publish() never blocks and never throws: the caller's state machine is not held up by I/O.
import type { Logger } from './logger';
import { messageType } from './proto';
import { TtrpcClient, TtrpcError, Code } from './ttrpc';

const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';
const CALL_TIMEOUT_MS = 5000;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;
/** containerd answered with an error status (it is up, but refuses this event): after this many tries the event is logged and skipped. */
const MAX_REFUSALS = 5;

export interface Envelope {
  topic: string;
  namespace: string;
  /** Fully qualified protobuf message name, e.g. containerd.events.TaskExit (also its type URL). */
  typeName: string;
  event: object;
  timestamp: Date;
}

export interface Publisher {
  publish(namespace: string, topic: string, typeName: string, event: object): void;
  /** Deliver what is queued, then stop; resolves when the queue is empty or the deadline passed. */
  close(deadlineMs: number): Promise<void>;
}

export function toTimestamp(d: Date): { seconds: number; nanos: number } {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
}

/** Connects lazily; the injectable `connect` lets unit tests drive it without sockets. */
export class RemotePublisher implements Publisher {
  /** Encoded ForwardRequests, oldest first. */
  private readonly queue: Array<{ topic: string; namespace: string; payload: Buffer }> = [];
  private client: TtrpcClient | undefined;
  private running = false;
  private closing = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private drained: Array<() => void> = [];

  constructor(
    private readonly address: string,
    private readonly log: Logger,
    private readonly connect: (address: string) => Promise<TtrpcClient> = (a) => TtrpcClient.connect(a, { timeoutMs: CALL_TIMEOUT_MS }),
  ) {}

  get pending(): number {
    return this.queue.length;
  }

  /** For the diagnostic dump: the queue's topics, oldest first, and whether delivery is under way. */
  describe(): { queued: number; topics: string[]; forwarding: boolean; connected: boolean } {
    return {
      queued: this.queue.length,
      topics: this.queue.map((e) => e.topic),
      forwarding: this.running,
      connected: this.client !== undefined && !this.client.closed,
    };
  }

  publish(namespace: string, topic: string, typeName: string, event: object): void {
    if (this.stopped) {
      this.log.warn({ topic }, 'event published after the outbox closed');
      return;
    }
    let payload: Buffer;
    try {
      payload = encodeForward({ namespace, topic, typeName, event, timestamp: new Date() });
    } catch (err) {
      // A programming error, not a delivery problem: it must not hold up the events behind it.
      this.log.error({ err, topic, typeName }, 'event cannot be encoded; not sent');
      return;
    }
    this.queue.push({ topic, namespace, payload });
    this.log.debug({ topic, typeName }, 'event queued');
    if (!this.running) void this.forward();
  }

  async close(deadlineMs: number): Promise<void> {
    this.closing = true;
    if (this.queue.length > 0 && this.address) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        this.drained.push(() => { clearTimeout(timer); resolve(); });
        this.wake?.(); // retry now rather than after the current backoff
      });
    }
    this.stopped = true;
    this.wake?.();
    if (this.queue.length > 0) this.log.warn({ left: this.queue.length }, 'shim exiting with undelivered events');
    this.dropClient();
  }

  private async forward(): Promise<void> {
    this.running = true;
    let backoff = BACKOFF_MIN_MS;
    let refusals = 0;
    while (this.queue.length > 0 && !this.stopped) {
      if (!this.address) {
        // No TTRPC_ADDRESS (started by hand): nobody to tell; keep the queue from growing.
        this.queue.length = 0;
        break;
      }
      const head = this.queue[0];
      try {
        await this.send(head);
        this.queue.shift();
        backoff = BACKOFF_MIN_MS;
        refusals = 0;
        continue;
      } catch (err) {
        const refused = err instanceof TtrpcError && err.code !== Code.Unavailable && err.code !== Code.DeadlineExceeded;
        if (refused && ++refusals >= MAX_REFUSALS) {
          this.log.error({ err, topic: head.topic }, 'containerd refused event; skipping it');
          this.queue.shift();
          refusals = 0;
          backoff = BACKOFF_MIN_MS;
          continue;
        }
        this.log.warn({ err: String(err), topic: head.topic, queued: this.queue.length }, 'event forward failed; retrying');
        if (!refused) this.dropClient();
      }
      await this.sleep(backoff);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
    this.running = false;
    if (this.stopped) this.dropClient();
    if (this.queue.length === 0) for (const done of this.drained.splice(0)) done();
  }

  private async send(e: { namespace: string; payload: Buffer }): Promise<void> {
    if (!this.client || this.client.closed) this.client = await this.connect(this.address);
    await this.client.call(EVENTS_SERVICE, 'Forward', e.payload, { timeoutMs: CALL_TIMEOUT_MS, metadata: { 'containerd-namespace-ttrpc': e.namespace } });
  }

  private dropClient(): void {
    this.client?.close();
    this.client = undefined;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { clearTimeout(timer); this.wake = undefined; resolve(); };
    });
  }
}

function encodeForward(e: Envelope): Buffer {
  const eventType = messageType(e.typeName);
  const forward = messageType('containerd.services.events.ttrpc.v1.ForwardRequest');
  return Buffer.from(forward.encode(forward.fromObject({
    envelope: {
      timestamp: toTimestamp(e.timestamp),
      namespace: e.namespace,
      topic: e.topic,
      event: { type_url: e.typeName, value: eventType.encode(eventType.fromObject(e.event)).finish() },
    },
  })).finish());
}
