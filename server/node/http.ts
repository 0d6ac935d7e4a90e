// The HTTP side port: health for orchestrators now; the JSON gateway and
// Prometheus metrics register routes here as they arrive.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOn } from './listen.js';

export type HttpRoute = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export class HttpServer {
  private readonly server: Server;
  private readonly routes = new Map<string, HttpRoute>();

  constructor() {
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const route = this.routes.get(`${req.method ?? 'GET'} ${path}`);
      if (route === undefined) {
        sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${req.method ?? 'GET'} ${path}` } });
        return;
      }
      Promise.resolve(route(req, res)).catch((err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: { code: 'INTERNAL', message: String(err) } });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  route(method: string, path: string, handler: HttpRoute): void {
    this.routes.set(`${method} ${path}`, handler);
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
