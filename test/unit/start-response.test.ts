// What `start` prints for each containerd: the bare address for 1.6/1.7, JSON bootstrap params
// (version 3, ttrpc) for a 2.x that announced MAX_SHIM_VERSION >= 3.
import t from 'tap';
import { startResponse } from '../../shim/framework/shim';

const ADDRESS = 'unix:///run/containerd/s/0123abcd';

t.test('without MAX_SHIM_VERSION (containerd 1.6) or below 3 (1.7 sets 2): the bare address', async (t) => {
  for (const v of [undefined, '', '1', '2', 'x', '2.5', '-3']) t.equal(startResponse(ADDRESS, v), ADDRESS, `MAX_SHIM_VERSION=${String(v)}`);
});

t.test('MAX_SHIM_VERSION >= 3 (containerd 2.x): JSON bootstrap params naming version 3 and ttrpc', async (t) => {
  for (const v of ['3', '4', '10']) {
    const out = startResponse(ADDRESS, v);
    t.same(JSON.parse(out), { version: 3, address: ADDRESS, protocol: 'ttrpc' }, `MAX_SHIM_VERSION=${v}`);
    t.notMatch(out, /\n/, 'one line, nothing else');
  }
});
