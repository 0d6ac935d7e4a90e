// One clock for every process of a fault run: epoch milliseconds with sub-millisecond
// steps. Not performance.timeOrigin + performance.now(): timeOrigin pairs two clock
// reads taken at process start, and a process descheduled between them (a loaded
// machine) keeps that gap as a fixed offset for its whole life. A CI run once had one
// client process ~100 ms ahead of the others, and the checker duly reported 67 token-order
// and hold-overlap "anomalies" involving that client only. Here the origin is the median
// of back-to-back (Date.now() - performance.now()) readings taken once, after start-up.

function sampleOriginMs(): number {
  const samples: number[] = [];
  for (let i = 0; i < 15; i++) samples.push(Date.now() - performance.now());
  samples.sort((a, b) => a - b);
  return samples[7] ?? Date.now() - performance.now();
}

const originEpochMs = sampleOriginMs();

/** Epoch ms on the clock shared by the runner, the workloads and every client process. */
export function epochNowMs(): number {
  return originEpochMs + performance.now();
}
