// The shim's OOM score: containerd's + 1, so that under memory pressure the kernel kills a shim
// before containerd, and a container (which inherits from the shim unless its spec says
// otherwise) no earlier than its shim's own choice. As containerd's shim.AdjustOOMScore: the
// start process still has containerd's score (inherited through bin/), clamped to the kernel's max.
import * as fs from 'node:fs';

export const OOM_SCORE_ADJ_MAX = 1000;

/** Raise our own oom_score_adj to (what we inherited) + 1, at most 1000; returns the new value. */
export function adjustOwnOomScore(procRoot = '/proc'): number {
  const file = `${procRoot}/self/oom_score_adj`;
  const inherited = Number(fs.readFileSync(file, 'utf8').trim());
  if (!Number.isInteger(inherited)) throw new Error(`oom_score_adj: unexpected content of ${file}`);
  const score = Math.min(inherited + 1, OOM_SCORE_ADJ_MAX);
  if (score !== inherited) fs.writeFileSync(file, `${score}\n`);
  return score;
}
