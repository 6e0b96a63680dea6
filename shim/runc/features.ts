// The runtime's features for `-info`: `runc features` (runtime-spec features.md JSON), as the Go
// shim's manager.Info reports them. containerd's CRI plugin reads them, e.g. for user namespaces
// with idmapped mounts.
import type { AnyMessage } from '../framework/bootstrap';
import type { Reaper } from '../framework/reaper';
import { runCommand } from './command';

/** The type URL containerd registers for runtime-spec's features.Features (JSON-encoded). */
export const FEATURES_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/features/Features';
const DEADLINE_MS = 10_000;

/**
 * `<binary> features` as an Any, or undefined when the runtime has no such command or its output
 * is not a JSON object (the Go shim then leaves the features out too). A binary that cannot be run
 * at all is an error, as the Go shim's exec.LookPath failure is.
 */
export async function runtimeFeatures(binary: string, reaper: Reaper): Promise<AnyMessage | undefined> {
  let result;
  try {
    result = await runCommand(reaper, { file: binary, args: ['features'], capture: 'stdout', deadlineMs: DEADLINE_MS });
  } catch (err) {
    throw new Error(`failed to look up the path of "${binary}": ${(err as Error).message}`);
  }
  if (result.status !== 0 || result.timedOut) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.output);
  } catch {
    return undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  return { type_url: FEATURES_TYPE_URL, value: Buffer.from(JSON.stringify(parsed)) };
}
