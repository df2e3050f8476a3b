/**
 * The two peers every kernel figure is reported next to, in the same process and run:
 *  - @tensorflow/tfjs-backend-wasm (XNNPACK kernels), single thread (it has no threads in Node anyway);
 *  - onnxruntime-web's wasm backend (MLAS kernels), numThreads = 1, fed hand-encoded ONNX models.
 * Both are devDependencies: when they are missing (an installed ponder), `loadPeers` returns the
 * ones it could load and the reason for the others.
 *
 * Each peer gets its favourable layout, decided at load time as a real model would:
 *  - linear: the constant weight as B[K,N] (tfjs matMul without transpose, ONNX MatMul initializer);
 *    tfjs with transposeB on W[N,K] measured about 10× slower, which would flatter ponder.
 *  - attention: the cache heads-major, K already transposed: Q[H,1,D], Kt[H,D,T], V[H,T,D].
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { attentionModel, matMulModel } from './onnx-model.js';
import type { InferenceSession } from 'onnxruntime-web';

/** One prepared computation: `call` runs it once (copies rotate inside); `dispose` frees it. */
export interface PeerCase {
  call(): void | Promise<void>;
  readonly async: boolean;
  dispose(): void | Promise<void>;
}

export interface Peer {
  readonly name: string;
  /** Y[M,N] = X[M,K]·B[K,N]; the case holds every copy in `weightCopiesKN` and uses the next one each call. */
  linear(M: number, K: number, N: number, x: Float32Array, weightCopiesKN: Float32Array[]): Promise<PeerCase>;
  /** Single-query attention, H heads of size D over T cached positions. */
  attention(H: number, T: number, D: number, scale: number, q: Float32Array, kT: Float32Array, v: Float32Array): Promise<PeerCase>;
}

export interface LoadedPeers {
  peers: Peer[];
  unavailable: string[]; // "name: reason"
}

export async function loadPeers(): Promise<LoadedPeers> {
  const peers: Peer[] = [];
  const unavailable: string[] = [];
  for (const [name, load] of [['tfjs-wasm', loadTfjs], ['ort-web', loadOrt]] as const) {
    try {
      peers.push(await load());
    } catch (e) {
      unavailable.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { peers, unavailable };
}

const require = createRequire(import.meta.url);

async function loadTfjs(): Promise<Peer> {
  const tf = await import('@tensorflow/tfjs-core');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // In Node the backend cannot locate its .wasm files by itself: point it at its own dist/.
  const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
  wasm.setWasmPaths(dist + path.sep);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false); // single thread, like the other figures
  // Its emscripten glue adds process-wide uncaughtException/unhandledRejection handlers that
  // rethrow with the whole minified module as context; take them out again so any later error
  // is reported the normal way.
  const before = { exception: process.listeners('uncaughtException'), rejection: process.listeners('unhandledRejection') };
  const initialised = await tf.setBackend('wasm');
  for (const l of process.listeners('uncaughtException')) if (!before.exception.includes(l)) process.removeListener('uncaughtException', l);
  for (const l of process.listeners('unhandledRejection')) if (!before.rejection.includes(l)) process.removeListener('unhandledRejection', l);
  if (!initialised) throw new Error('tfjs wasm backend failed to initialise');
  await tf.ready();
  if (!tf.env().getBool('WASM_HAS_SIMD_SUPPORT')) throw new Error('tfjs wasm backend loaded without SIMD');

  return {
    name: 'tfjs-wasm',
    async linear(M, K, N, x, weightCopiesKN) {
      const xt = tf.tensor2d(x, [M, K]);
      const weights = weightCopiesKN.map((b) => tf.tensor2d(b, [K, N]));
      let next = 0;
      return {
        async: false,
        call() {
          const y = tf.matMul(xt, weights[next], false, false); // runs synchronously on the wasm backend
          next = (next + 1) % weights.length;
          y.dispose();
        },
        dispose() { xt.dispose(); for (const w of weights) w.dispose(); },
      };
    },
    async attention(H, T, D, scale, q, kT, v) {
      const qt = tf.tensor3d(q, [H, 1, D]);
      const kTt = tf.tensor3d(kT, [H, D, T]);
      const vt = tf.tensor3d(v, [H, T, D]);
      return {
        async: false,
        call() {
          const out = tf.tidy(() => tf.matMul(tf.softmax(tf.mul(tf.matMul(qt, kTt), scale)), vt));
          out.dispose();
        },
        dispose() { qt.dispose(); kTt.dispose(); vt.dispose(); },
      };
    },
  };
}

async function loadOrt(): Promise<Peer> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const sessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' as const };

  return {
    name: 'ort-web',
    async linear(M, K, N, x, weightCopiesKN) {
      const sessions: InferenceSession[] = [];
      for (const b of weightCopiesKN) sessions.push(await ort.InferenceSession.create(matMulModel(M, K, N, b), sessionOptions));
      const feeds = { X: new ort.Tensor('float32', x, [M, K]) };
      let next = 0;
      return {
        async: true,
        async call() {
          await sessions[next].run(feeds);
          next = (next + 1) % sessions.length;
        },
        async dispose() { for (const s of sessions) await s.release(); },
      };
    },
    async attention(H, T, D, scale, q, kT, v) {
      const session = await ort.InferenceSession.create(attentionModel(H, T, D, scale), sessionOptions);
      const feeds = {
        Q: new ort.Tensor('float32', q, [H, 1, D]),
        Kt: new ort.Tensor('float32', kT, [H, D, T]),
        V: new ort.Tensor('float32', v, [H, T, D]),
      };
      return {
        async: true,
        async call() { await session.run(feeds); },
        async dispose() { await session.release(); },
      };
    },
  };
}
