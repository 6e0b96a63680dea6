// Where runcts lives: the directory holding dist/, proto/ and addon/, whether this code runs as
// tsc's output (dist/shim/framework/*.js), as the single bundle (dist/runcts.js, also inside the
// startup snapshot) or from the sources (shim/framework/*.ts).
import * as path from 'node:path';

export function installRoot(): string {
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    if (path.basename(d) === 'dist') return path.dirname(d);
  }
  return path.resolve(__dirname, '../..');
}
