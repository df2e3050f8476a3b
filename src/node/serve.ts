/**
 * The Node adapter of the server core (src/serve/server.ts): node:http requests become WHATWG
 * Requests (whose signal aborts when the client's connection closes before the response is done)
 * and Responses are written back, streamed bodies chunk by chunk with backpressure. Deno and Bun
 * serve the same core natively (spec/serve.md).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { PonderError } from '../errors.js';
import type { PonderServer } from '../serve/server.js';

export interface ListenOptions {
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
}

export interface Listening {
  /** http://host:port */
  readonly url: string;
  readonly http: HttpServer;
  /** Stops accepting connections, waits for `server.drain()`, then closes what is left. */
  close(): Promise<void>;
}

/** Serves `server` on node:http. Errors: SERVE_LISTEN (the address is taken, or not this machine's). */
export async function listen(server: PonderServer, options: ListenOptions = {}): Promise<Listening> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8080;
  // responses still being written: a drained core may have handed over bytes not yet sent
  const writing = new Set<Promise<void>>();
  const http = createHttpServer((req, res) => {
    // handle() never rejects; anything else that fails (a socket error mid-write) ends this connection only
    const done: Promise<void> = respond(server, req, res).catch(() => { res.destroy(); }).finally(() => writing.delete(done));
    writing.add(done);
  });
  http.listen(port, host);
  try {
    await once(http, 'listening');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PonderError('SERVE_LISTEN', `cannot listen on ${host}:${port}: ${err.code ?? ''} ${err.message}`.trim(), {
      field: err.code === 'EADDRINUSE' ? 'port' : 'host',
      hint: err.code === 'EADDRINUSE' ? 'another process uses this port: pick another with --port, or stop it' : 'use an address of this machine (127.0.0.1 for loopback only, 0.0.0.0 for every interface)',
    });
  }
  const address = http.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}`,
    http,
    async close() {
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeIdleConnections();
      await server.drain();
      await Promise.all([...writing]);
      http.closeAllConnections();
      await closed;
    },
  };
}

async function respond(server: PonderServer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const gone = new AbortController();
  res.on('close', () => { if (!res.writableFinished) gone.abort(); });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.set(name, value);
  }
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  const request = new Request(new URL(req.url ?? '/', 'http://localhost'), {
    method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
    signal: gone.signal,
    // @ts-expect-error -- Node's fetch needs duplex for a streamed body; the DOM typings lack it
    duplex: 'half',
  });
  const response = await server.handle(request);
  const out: Record<string, string> = {};
  response.headers.forEach((value, name) => { out[name] = value; });
  res.writeHead(response.status, out);
  if (response.body) {
    const reader = response.body.getReader();
    res.on('close', () => void reader.cancel().catch(() => {}));
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!res.write(value)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
        if (res.destroyed) break;
      }
    } catch { /* cancelled because the client went away */ }
  }
  if (!res.destroyed) {
    const sent = Promise.race([once(res, 'finish'), once(res, 'close')]);
    res.end();
    await sent;
  }
}
