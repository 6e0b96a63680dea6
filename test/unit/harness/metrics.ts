// Shared by the cgroup v1 and v2 metrics tests.
import type { Test } from 'tap';
import { messageType } from '../../../shim/framework/proto';

/** Encode and decode as `typeName`: every leaf we produce must come back, at the same path, with the same value. */
export function checkRoundTrip(t: Test, typeName: string, metrics: object): void {
  const type = messageType(typeName);
  const decoded = type.toObject(type.decode(type.encode(type.fromObject(metrics)).finish()), { longs: String, defaults: true, arrays: true });
  const mismatches: string[] = [];
  const walk = (ours: unknown, theirs: unknown, at: string): void => {
    if (ours !== null && typeof ours === 'object') {
      if (theirs === null || typeof theirs !== 'object') return void mismatches.push(`${at}: missing after decode`);
      for (const [k, v] of Object.entries(ours)) walk(v, (theirs as Record<string, unknown>)[k], `${at}.${k}`);
      return;
    }
    if (String(ours) !== String(theirs)) mismatches.push(`${at}: ${String(ours)} -> ${String(theirs)}`);
  };
  walk(metrics, decoded, 'metrics');
  t.same(mismatches, [], 'every field survives encode/decode (no unknown field names)');
}
