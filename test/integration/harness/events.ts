// `ctr events` in the background, parsed as a stream.
//
// ctr 1.6 prints one event per line:
//   2026-11-22 10:24:55.789226632 +0000 UTC <namespace> /tasks/create {"container_id":"e1",...}
import { ChildProcess, spawn } from 'node:child_process';
import { Containerd } from './containerd';
import { withTimeout } from './proc';

export interface CtrEvent {
  raw: string;
  timestamp: string;
  namespace: string;
  topic: string;
  /** The event body as JSON, or undefined when it did not parse. */
  payload: Record<string, unknown> | undefined;
}

const LINE = /^(\S+ \S+ [+-]\d{4} \S+) (\S+) (\/\S+)(?: (.*))?$/;

/** Parse one line of `ctr events` output; undefined for anything else. */
export function parseEventLine(line: string): CtrEvent | undefined {
  const m = LINE.exec(line.trimEnd());
  if (!m) return undefined;
  let payload: Record<string, unknown> | undefined;
  try {
    payload = m[4] ? (JSON.parse(m[4]) as Record<string, unknown>) : {};
  } catch {
    payload = undefined;
  }
  return { raw: line, timestamp: m[1]!, namespace: m[2]!, topic: m[3]!, payload };
}

/** The container an event is about (task events: container_id; container events: id). */
export function eventContainerId(e: CtrEvent): string | undefined {
  const p = e.payload;
  if (!p) return undefined;
  if (typeof p.container_id === 'string') return p.container_id;
  if (e.topic.startsWith('/containers/') && typeof p.id === 'string') return p.id;
  return undefined;
}

export class EventStream {
  readonly events: CtrEvent[] = [];
  /** Lines that did not parse (stderr included), for diagnostics. */
  readonly other: string[] = [];
  private proc: ChildProcess;
  private buf = '';
  private closed = false;
  private killTimer: NodeJS.Timeout;
  private waiters: Array<() => void> = [];

  private constructor(private readonly cd: Containerd, maxLifetimeMs: number) {
    this.proc = spawn(cd.ctrPath, ['--address', cd.address, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.killTimer = setTimeout(() => this.proc.kill('SIGKILL'), maxLifetimeMs);
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (s: string) => this.feed(s));
    this.proc.stderr!.setEncoding('utf8');
    this.proc.stderr!.on('data', (s: string) => this.other.push(...s.split('\n').filter(Boolean)));
    this.proc.on('close', () => {
      this.closed = true;
      clearTimeout(this.killTimer);
      this.wake();
    });
    this.proc.on('error', e => {
      this.other.push(`spawn error: ${e.message}`);
      this.closed = true;
      this.wake();
    });
  }

  /**
   * Start `ctr events` (all namespaces) and return once it is subscribed: a namespace label
   * update is made until its /namespaces/update event shows up in the stream.
   */
  static async start(cd: Containerd, opts: { maxLifetimeMs?: number; readyTimeoutMs?: number } = {}): Promise<EventStream> {
    const s = new EventStream(cd, opts.maxLifetimeMs ?? 600_000);
    // The probe needs the namespace to exist (it does once an image was imported).
    await cd.ctr(['namespaces', 'create', cd.namespace], { timeoutMs: 10_000 });
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
    for (let n = 0; Date.now() < deadline && !s.closed; n++) {
      const value = `p${process.pid}-${n}`;
      await cd.ctrOk(['namespaces', 'label', cd.namespace, `runcts.test/events-probe=${value}`], { timeoutMs: 10_000 });
      const seen = await s.waitFor(e => e.topic === '/namespaces/update' && JSON.stringify(e.payload ?? {}).includes(value), 300);
      if (seen) return s;
    }
    s.stop();
    throw new Error(`ctr events did not become ready; output: ${s.other.join('\n')}`);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private feed(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (!line.trim()) continue;
      const e = parseEventLine(line);
      if (e) this.events.push(e);
      else this.other.push(line);
    }
    this.wake();
  }

  /** Events of one container in this containerd's namespace (or another), in arrival order. */
  forContainer(id: string, ns = this.cd.namespace): CtrEvent[] {
    return this.events.filter(e => e.namespace === ns && eventContainerId(e) === id);
  }

  /** Wait for an event matching pred (already received ones count). */
  async waitFor(pred: (e: CtrEvent) => boolean, timeoutMs = 10_000): Promise<CtrEvent | undefined> {
    const deadline = Date.now() + timeoutMs;
    let checked = 0;
    for (;;) {
      for (; checked < this.events.length; checked++) if (pred(this.events[checked]!)) return this.events[checked];
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return undefined;
      await withTimeout(new Promise<void>(res => this.waiters.push(res)), left);
    }
  }

  stop(): void {
    clearTimeout(this.killTimer);
    if (!this.closed) this.proc.kill('SIGKILL');
  }
}
