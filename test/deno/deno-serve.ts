/**
 * Deno serves the server core natively: `deno run --allow-read --allow-net dist/test/deno/deno-serve.js [MODELS_DIR]`.
 * Prints `LISTENING <url>` once ready and one line per request; SIGTERM stops accepting, lets the
 * requests in flight finish, and exits 0.
 */
import { demoServer, drainAndExit, SERVED_MODEL } from '../portable/serve-model.js';

interface DenoHttpServer { shutdown(): Promise<void>; finished: Promise<void> }
declare const Deno: {
  readonly args: string[];
  readFile(path: string): Promise<Uint8Array>;
  readTextFile(path: string): Promise<string>;
  serve(options: { hostname: string; port: number; onListen(addr: { port: number }): void }, handler: (request: Request) => Promise<Response>): DenoHttpServer;
  addSignalListener(signal: 'SIGTERM', handler: () => void): void;
  exit(code: number): never;
};

const dir = `${Deno.args[0] ?? 'models'}/${SERVED_MODEL}`;
const server = demoServer({ readText: (p) => Deno.readTextFile(`${dir}/${p}`), readBytes: (p) => Deno.readFile(`${dir}/${p}`) }, (line) => console.log(line));
await server.ready;
const http = Deno.serve({ hostname: '127.0.0.1', port: 0, onListen: ({ port }) => console.log(`LISTENING http://127.0.0.1:${port}`) }, (request) => server.handle(request));
Deno.addSignalListener('SIGTERM', () => void drainAndExit(server, () => http.shutdown(), (code) => Deno.exit(code)));
