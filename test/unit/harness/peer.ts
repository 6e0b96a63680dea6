// A client of another user: connect to a unix socket as uid/gid 65534 (setpriv), send bytes, and
// report what came back and how the connection ended. For the shim's same-user peer check.
import { spawn } from 'node:child_process';
import { encodeFrame, MessageType } from '../../../shim/framework/ttrpc';
import { encodeRequest } from '../../../shim/framework/ttrpc/messages';

export const NOBODY = 65534;

export interface PeerOutcome {
  /** The uid the client really ran as. */
  uid?: number;
  /** connect() succeeded. */
  connected?: boolean;
  /** Bytes it received. */
  got?: number;
  /** True when the connection was still open when the client gave up (after waitMs). */
  open?: boolean;
  /**
   * The error code of connect (EACCES when the socket's mode keeps it out), or of the write or
   * read after it (EPIPE, ECONNRESET when the server closed first).
   */
  error?: string;
}

/** One well-formed ttrpc request frame (stream 1). */
export function requestFrame(service: string, method: string, payload: Buffer, metadata: Record<string, string> = {}): Buffer {
  return encodeFrame(1, MessageType.Request, encodeRequest({
    service, method, payload, timeout_nano: 0, metadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
  }));
}

/**
 * Connect as nobody; with dacOverride the client keeps CAP_DAC_OVERRIDE (ambient), so file modes
 * do not stop it and only the server's own check can.
 */
export function connectAsNobody(sockPath: string, bytes: Buffer, opts: { dacOverride?: boolean; waitMs?: number } = {}): Promise<PeerOutcome> {
  const script = `const s=require('net').connect(process.argv[1]);let got=0,connected=false;const done=(o)=>{console.log(JSON.stringify({uid:process.getuid(),connected,got,...o}));process.exit(0)};` +
    `s.on('connect',()=>{connected=true;s.write(Buffer.from(process.argv[2],'hex'))});s.on('data',(d)=>{got+=d.length});` +
    `s.on('close',()=>done({}));s.on('error',(e)=>done({error:e.code}));setTimeout(()=>done({open:true}),Number(process.argv[3]))`;
  const caps = opts.dacOverride ? ['--inh-caps', '+dac_override', '--ambient-caps', '+dac_override'] : [];
  const args = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', ...caps,
    process.execPath, '-e', script, sockPath, bytes.toString('hex'), String(opts.waitMs ?? 3000)];
  return new Promise((resolve) => {
    const c = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err += d; });
    c.on('close', () => {
      try {
        resolve(JSON.parse(out.trim()) as PeerOutcome);
      } catch {
        resolve({ error: `no report from the client: ${err.trim()}` });
      }
    });
  });
}
