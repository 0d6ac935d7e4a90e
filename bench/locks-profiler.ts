// Preloaded into the bench's node processes (NODE_OPTIONS=--import, since
// --cpu-prof is refused there) when LOCKS_BENCH_CPU_PROF_DIR is set: samples the
// CPU from start to exit and writes a .cpuprofile (open in Chrome DevTools) there.
// With LOCKS_BENCH_CPU_PROF_WINDOW=signal it samples only between a first SIGUSR2
// (start) and a second one (stop and write), so a bench can profile its measured
// window alone instead of start-up and loading (bench/cache.ts does).

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.LOCKS_BENCH_CPU_PROF_DIR ?? '';
if (dir !== '') {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  let written = false;
  const write = (): void => {
    if (written) return;
    written = true;
    // The same-thread session answers synchronously.
    session.post('Profiler.stop', (err, res) => {
      if (err === null) writeFileSync(join(dir, `node-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  };
  if (process.env.LOCKS_BENCH_CPU_PROF_WINDOW === 'signal') {
    let started = false;
    process.on('SIGUSR2', () => {
      if (!started) {
        started = true;
        session.post('Profiler.start');
      } else {
        write();
      }
    });
  } else {
    session.post('Profiler.start');
    process.on('exit', write);
  }
}
