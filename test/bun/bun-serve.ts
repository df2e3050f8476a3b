/**
 * Bun serves the server core natively: `bun dist/test/bun/bun-serve.js [MODELS_DIR]`. Prints
 * `LISTENING <url>` once ready and one line per request; SIGTERM stops accepting, lets the
 * requests in flight finish, and exits 0.
 */
import { demoServer, drainAndExit, SERVED_MODEL } from '../portable/serve-model.js';

interface BunServer { readonly port: number; stop(closeActiveConnections?: boolean): Promise<void> | void }
declare const Bun: {
  readonly argv: string[];
  file(path: string): { text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> };
  // idleTimeout 0: a generation may send nothing for longer than Bun's default 10 s
  serve(options: { hostname: string; port: number; idleTimeout: number; fetch(request: Request): Promise<Response> }): BunServer;
};

const dir = `${Bun.argv[2] ?? 'models'}/${SERVED_MODEL}`;
const server = demoServer({ readText: (p) => Bun.file(`${dir}/${p}`).text(), readBytes: async (p) => new Uint8Array(await Bun.file(`${dir}/${p}`).arrayBuffer()) }, (line) => console.log(line));
await server.ready;
const http = Bun.serve({ hostname: '127.0.0.1', port: 0, idleTimeout: 0, fetch: (request) => server.handle(request) });
console.log(`LISTENING http://127.0.0.1:${http.port}`);
process.on('SIGTERM', () => void drainAndExit(server, () => http.stop(), (code) => process.exit(code)));
