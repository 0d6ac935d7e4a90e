// Types for the part of autocannon (a devDependency without its own types) that
// bench/http.ts uses: one run with a request sequence, and its result summary.

declare module 'autocannon' {
  export interface Request {
    method?: string;
    path?: string;
    body?: string;
    headers?: Record<string, string>;
    setupRequest?: (req: Request, context: Record<string, unknown>) => Request;
  }
  export interface Options {
    url: string;
    connections?: number;
    duration?: number;
    amount?: number;
    timeout?: number;
    method?: string;
    body?: string;
    headers?: Record<string, string>;
    requests?: Request[];
  }
  export interface Stats {
    average: number;
    mean: number;
    p50: number;
    p99: number;
    p99_9?: number;
    max: number;
    total?: number;
  }
  export interface Result {
    requests: Stats;
    latency: Stats;
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    '2xx': number;
  }
  function autocannon(opts: Options): Promise<Result>;
  export default autocannon;
}
