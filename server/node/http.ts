// The HTTP side port: health for orchestrators, Prometheus metrics, and the JSON
// gateway (mounted under /v1/, server/node/gateway.ts, which matches its own path
// templates). HEAD is answered on every GET route (headers, no body); a known path
// with another method is 405.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOn } from './listen.js';

export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export class HttpServer {
  private readonly server: Server;
  private readonly routes = new Map<string, HttpRoute>();
  /** Path prefixes whose requests a handler takes whole (its own 404/405), after the exact routes. */
  private readonly mounts: { readonly prefix: string; readonly handler: HttpRoute }[] = [];

  constructor() {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const method = req.method ?? 'GET';
      // Node's response drops the body of a HEAD request by itself; the headers are the GET's.
      const route = this.routes.get(`${method} ${path}`) ?? (method === 'HEAD' ? this.routes.get(`GET ${path}`) : undefined);
      const mount = route === undefined ? this.mounts.find((m) => path.startsWith(m.prefix)) : undefined;
      if (route === undefined && mount !== undefined) {
        this.run(mount.handler, req, res);
        return;
      }
      if (route === undefined) {
        const allowed = [...this.routes.keys()].filter((k) => k.endsWith(` ${path}`)).map((k) => k.slice(0, k.indexOf(' ')));
        if (allowed.length > 0) {
          if (allowed.includes('GET')) allowed.push('HEAD');
          res.setHeader('allow', allowed.join(', '));
          sendJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: `${path} answers ${allowed.join(', ')}, not ${method}` } });
          return;
        }
        sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${method} ${path}` } });
        return;
      }
      this.run(route, req, res);
    });
    this.server.keepAliveTimeout = 5000;
  }

  route(method: string, path: string, handler: HttpRoute): void {
    this.routes.set(`${method} ${path}`, handler);
  }

  /** Hands every request whose path starts with `prefix` (and matches no exact route) to `handler`. */
  mount(prefix: string, handler: HttpRoute): void {
    if (this.mounts.some((m) => prefix.startsWith(m.prefix) || m.prefix.startsWith(prefix))) throw new Error(`HTTP mount ${prefix} overlaps another`);
    this.mounts.push({ prefix, handler });
  }

  private run(route: HttpRoute, req: IncomingMessage, res: ServerResponse): void {
    Promise.resolve(route(req, res)).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: String(err) } });
      else res.destroy();
    });
  }

  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
