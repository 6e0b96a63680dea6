#!/usr/bin/env node
// containerd-shim-runcts-v2: the framework's CLI contract driving the runc implementation.
import { runShim } from './framework/shim';
import { RuncManager } from './runc/manager';

runShim(new RuncManager()).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
