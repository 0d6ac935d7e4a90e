// Preloaded into the bench's node processes (NODE_OPTIONS=--import, since
// --cpu-prof is refused there) when LOCKS_BENCH_CPU_PROF_DIR is set: samples the
// CPU from start to exit and writes a .cpuprofile (open in Chrome DevTools) there.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.LOCKS_BENCH_CPU_PROF_DIR ?? '';
if (dir !== '') {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The same-thread session answers synchronously, so this runs before exit.
    session.post('Profiler.stop', (err, res) => {
      if (err === null) writeFileSync(join(dir, `node-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
