// DESIGN: libuv's own waitpid(pid) races the subreaper's waitpid(-1), so nothing in shim/ may use
// child_process; every child goes through the addon's spawn and the one reaper.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

const shimDir = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../../shim' : '../../shim');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

t.test('no module under shim/ imports child_process', async (t) => {
  const files = sources(shimDir);
  t.ok(files.length > 10, `found the shim sources (${files.length} files)`);
  const offenders = files.filter((f) => /(['"`])(node:)?child_process\1/.test(fs.readFileSync(f, 'utf8')));
  t.same(offenders, [], 'child_process appears nowhere in shim/');
});
