// Runs one exported function of a simulator module on a worker thread and hands
// back its (structured-clone) result. Why: a tap test file's own thread carries
// tap's async-hook-domain, whose init and destroy hooks track every promise (an
// await costs ~30 times more there than on a worker). The SimWorld simulators whose
// events run promise chains (the queue simulation's clients, the runner's storage)
// spent a third to a half of their CPU in those hooks. The lock simulations gain
// little (their service is synchronous), nor did the queue canaries (mostly idle
// drains), and a worker costs a second to start, so those stay on tap's thread. Same seeds, same code, same order: only the thread differs.

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

interface Call {
  readonly moduleUrl: string;
  readonly exportName: string;
  readonly args: readonly unknown[];
}

type Answer = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

/**
 * Calls `exportName(...args)` of the module at `moduleUrl` on a fresh worker thread
 * (its environment is this process's); resolves with what it returns or resolves
 * to, rejects with its error's stack if it throws or the worker dies.
 */
export function runOnWorker<R>(moduleUrl: URL, exportName: string, args: readonly unknown[]): Promise<R> {
  const call: Call = { moduleUrl: moduleUrl.href, exportName, args };
  return new Promise<R>((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: call });
    let answer: Answer | null = null;
    worker.on('message', (a: Answer) => (answer = a));
    worker.on('error', reject);
    worker.on('exit', (code) => {
      if (answer === null) reject(new Error(`${exportName} worker exited ${code} without an answer`));
      else if (answer.ok) resolve(answer.value as R);
      else reject(new Error(`${exportName} on a worker failed: ${answer.error}`));
    });
  });
}

/**
 * `exportName(seed, opts)` of the module at `moduleUrl` for each seed in order, all on one
 * worker thread; resolves with the results in seed order (runLockSeed, runRunnerSeed, ...).
 */
export function mapSeedsOnWorker<O, R>(moduleUrl: URL, exportName: string, seeds: readonly number[], opts: O): Promise<R[]> {
  return runOnWorker<R[]>(new URL(import.meta.url), 'mapSeedsInThread', [moduleUrl.href, exportName, seeds, opts]);
}

/** mapSeedsOnWorker's work, in the calling thread. */
export async function mapSeedsInThread(moduleUrl: string, exportName: string, seeds: readonly number[], opts: unknown): Promise<unknown[]> {
  const fn = await exportedFunction(moduleUrl, exportName);
  const out: unknown[] = [];
  for (const seed of seeds) out.push(await fn(seed, opts));
  return out;
}

async function exportedFunction(moduleUrl: string, exportName: string): Promise<(...a: readonly unknown[]) => unknown> {
  const mod = (await import(moduleUrl)) as Record<string, unknown>;
  const fn = mod[exportName];
  if (typeof fn !== 'function') throw new Error(`${moduleUrl} exports no function ${exportName}`);
  return fn as (...a: readonly unknown[]) => unknown;
}

async function serve(call: Call): Promise<Answer> {
  try {
    const fn = await exportedFunction(call.moduleUrl, call.exportName);
    return { ok: true, value: await fn(...call.args) };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
}

if (!isMainThread && parentPort !== null && (workerData as Partial<Call> | null)?.exportName !== undefined) {
  const port = parentPort;
  void serve(workerData as Call).then((a) => port.postMessage(a));
}
