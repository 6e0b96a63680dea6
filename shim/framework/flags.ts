// The shim's command line, parsed the way Go's flag package parses containerd-shim-runc-v2's:
// `-name value`, `--name value`, `-name=value`, bool flags bare; the first non-flag word is the action.

export interface ShimFlags {
  namespace: string;
  id: string;
  /** containerd's gRPC address (used to derive the shim socket name). */
  address: string;
  publishBinary: string;
  /** Bundle path when it is not the working directory (the `delete` action). */
  bundle: string;
  /** Socket path to serve on instead of fd 3. */
  socket: string;
  debug: boolean;
  /** pino level from containerd 2.3's BootstrapParams; '' : from debug. */
  logLevel: string;
  version: boolean;
  /** -info: print the runtime's containerd.types.RuntimeInfo (containerd 2.x asks). */
  info: boolean;
  /** '' (serve), 'start' or 'delete'. */
  action: string;
}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace', id: 'id', address: 'address', 'publish-binary': 'publishBinary', bundle: 'bundle', socket: 'socket',
};
const BOOL_FLAGS: Record<string, keyof ShimFlags> = { debug: 'debug', v: 'version', version: 'version', info: 'info' };

export class FlagError extends Error {
  override name = 'FlagError';
}

export function parseFlags(argv: string[]): ShimFlags {
  const flags: ShimFlags = {
    namespace: '', id: '', address: '', publishBinary: 'containerd', bundle: '', socket: '', debug: false, logLevel: '', version: false, info: false, action: '',
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') { i++; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const inline = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (name in BOOL_FLAGS) {
      const v = inline === undefined ? true : parseBool(name, inline);
      (flags as unknown as Record<string, unknown>)[BOOL_FLAGS[name]] = v;
    } else if (name in STRING_FLAGS) {
      let v = inline;
      if (v === undefined) {
        if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
        v = argv[++i];
      }
      (flags as unknown as Record<string, unknown>)[STRING_FLAGS[name]] = v;
    } else {
      throw new FlagError(`flag provided but not defined: -${name}`);
    }
  }
  flags.action = argv[i] ?? '';
  return flags;
}

function parseBool(name: string, v: string): boolean {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  throw new FlagError(`invalid boolean value "${v}" for -${name}`);
}

/** The flags a re-executed daemon gets: the same identity, no action. */
export function daemonArgs(f: ShimFlags): string[] {
  const args = ['-namespace', f.namespace, '-id', f.id, '-address', f.address, '-publish-binary', f.publishBinary];
  if (f.debug) args.push('-debug');
  return args;
}
