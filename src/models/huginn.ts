/**
 * Huginn-0125 (recurrent-depth LM, seal-rg/recurrent-pretraining `raven_modeling_minimal.py`),
 * semantics in ../shared/research/huginn.md and spec/huginn.md:
 *
 *   e₀ = wte[ids]·√E → prelude (P sandwich blocks) → e
 *   s₀ = initial state (truncated normal, or injected, or zeros at init_scale 0)
 *   s_k = core(adapter(concat(s_{k−1}, e)))            k = 1..n  (R sandwich blocks per step)
 *   logits = lm_head(ln_f(coda(ln_f(s_n))))            (the same ln_f twice, tied lm_head)
 *
 * Every attention layer × step has its own KV-cache slot (huginn-cache.ts). The model exposes the
 * pieces upstream's generation loops call one by one — embedInputs (prelude), coreStep (one
 * recurrence), predictFromLatents (coda + head) — and `forward`, the fixed-depth composition.
 * Generation (minimal, adaptive, speculative) lives in huginn-generate.ts.
 *
 * All compute goes through runtime.kernels on runtime.arena buffers (a workspace that grows when a
 * longer call arrives); public inputs and outputs are plain Float32Arrays owned by the caller.
 */
import { PonderError } from '../errors.js';
import type { LinearWeight } from '../kernels/kernels.js';
import type { Runtime } from '../runtime/runtime.js';
import type { TensorArray } from '../format/safetensors.js';
import { ropeTables } from './common.js';
import { checkContext, checkTokenIds, widenFloats, type Embedding, type FloatDType } from './inputs.js';
import { Workspace } from './workspace.js';
import { LIMITS, limitNote } from '../limits.js';
import { copyKv, narrowOnHeap, type KvDType } from './kv-store.js';
import { place, type Placement } from './placement.js';
import { WeightBinder, type WeightSource } from './weights.js';
import { HuginnCache, type CacheEntry } from './huginn-cache.js';
import { Prng } from '../generate/prng.js';
import { huginnMemory, huginnTensors, type HuginnConfig } from './huginn-config.js';

// bench/ (kept by the kernels branch) imports these from here
export { HUGINN_0125_CONFIG, huginnTensorShapes, parseHuginnConfig, type HuginnConfig } from './huginn-config.js';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// Weights

interface SandwichBlock {
  readonly norm1: Float32Array; // [E]
  readonly norm2: Float32Array;
  readonly norm3: Float32Array;
  readonly norm4: Float32Array;
  readonly qBias: Float32Array | null; // [H*hd]
  readonly kBias: Float32Array | null; // [Hkv*hd]
  readonly wqkv: LinearWeight; // [(H+2Hkv)*hd, E]
  readonly proj: LinearWeight; // [E, E]
  readonly fc: LinearWeight; // [2I, E]: gate rows then up rows
  readonly mlpProj: LinearWeight; // [E, I]
}

export interface LoadOptions {
  /** seed of our initial-state PRNG used when a call brings no initial state (not bit-compatible with torch) */
  readonly seed?: number;
  /**
   * 'f32' (default): every activation in f32. 'bf16': round activations to bf16 wherever upstream's
   * `model.to(torch.bfloat16)` holds them in bf16 (after each linear, add, norm, SiLU and product;
   * norms and RoPE computed in f32 inside; RoPE with the bf16-rounded table; attention in f32 and
   * cast back), to reproduce a bf16 run closely. Rounding is round-to-nearest-even.
   */
  readonly activations?: 'f32' | 'bf16';
  /** where the blocks live (memory shards); none: everything in the runtime's arena */
  readonly placement?: Placement | null;
}

/**
 * Declares every tensor the config implies and throws one BIND_MISMATCH listing all missing,
 * mis-shaped and unexpected tensors — before any tensor data is read (so a source that only
 * reports shapes can be checked). Returns the binder, ready to read.
 */
export function checkHuginnWeights(source: WeightSource, runtime: Runtime, config: HuginnConfig, placement: Placement | null = null): WeightBinder {
  const binder = new WeightBinder(source, runtime, placement);
  binder.declare(huginnTensors(config));
  binder.finish();
  return binder;
}

/** Binds a Huginn checkpoint (single file or shards behind one WeightSource) to a runtime. */
export function bindHuginn(config: HuginnConfig, source: WeightSource, runtime: Runtime, opts: LoadOptions = {}): HuginnModel {
  // the memory plan before any tensor is read (huginnFamily.load passes the one made for its options)
  const placement = opts.placement ?? place(huginnTensors(config), huginnMemory(config), source, runtime);
  const binder = checkHuginnWeights(source, runtime, config, placement);
  const hasFreqs = source.info('freqs_cis') !== undefined;
  // the WASM runtime holds every bound weight in one 4 GiB memory: fail before reading anything

  const block = (prefix: string): SandwichBlock => {
    let qBias: Float32Array | null = null, kBias: Float32Array | null = null;
    if (config.qkBias) {
      const both = binder.f32(`${prefix}.attn.qk_bias`); // [2, 1, H, hd]
      const n = config.nHeads * config.headDim;
      qBias = both.subarray(0, n);
      kBias = both.subarray(n, 2 * n);
    }
    return {
      norm1: binder.f32(`${prefix}.norm_1.weight`),
      norm2: binder.f32(`${prefix}.norm_2.weight`),
      norm3: binder.f32(`${prefix}.norm_3.weight`),
      norm4: binder.f32(`${prefix}.norm_4.weight`),
      qBias, kBias,
      wqkv: binder.linear(`${prefix}.attn.Wqkv.weight`),
      proj: binder.linear(`${prefix}.attn.proj.weight`),
      fc: binder.linear(`${prefix}.mlp.fc.weight`),
      mlpProj: binder.linear(`${prefix}.mlp.proj.weight`),
    };
  };
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  const weights: HuginnWeights = {
    wte: binder.embedding('transformer.wte.weight'),
    prelude: range(config.nPrelude).map((i) => block(`transformer.prelude.${i}`)),
    adapter: binder.linear('transformer.adapter.weight'),
    adapterBias: config.bias ? binder.f32('transformer.adapter.bias') : null,
    core: range(config.nCore).map((i) => block(`transformer.core_block.${i}`)),
    coda: range(config.nCoda).map((i) => block(`transformer.coda.${i}`)),
    lnF: binder.f32('transformer.ln_f.weight'),
    lmHead: binder.linear(source.info('lm_head.weight') ? 'lm_head.weight' : 'transformer.wte.weight', 'head'),
  };
  const model = new HuginnModel(config, runtime, weights, opts.seed ?? 0, opts.activations ?? 'f32', placement.plan.kvDtype);
  if (hasFreqs) model.verifyFreqsCis(binder.raw('freqs_cis'), source.info('freqs_cis')!.dtype, source.label);
  return model;
}

interface HuginnWeights {
  readonly wte: Embedding;
  readonly prelude: SandwichBlock[];
  readonly adapter: LinearWeight; // [E, 2E], input = concat(state, embedding)
  readonly adapterBias: Float32Array | null;
  readonly core: SandwichBlock[];
  readonly coda: SandwichBlock[];
  readonly lnF: Float32Array;
  readonly lmHead: LinearWeight; // [V, E]
}

// ---------------------------------------------------------------------------------------------
// Initial states

/**
 * Where initial latent states s₀ come from. `next(B, S)` returns [B, S, E] for one call of
 * upstream's `initialize_state` (one per forward / token step).
 */
export interface InitialStates {
  next(B: number, S: number, E: number, sigma: number, embedScale: number): Float32Array;
}

/**
 * Upstream's distribution from our PRNG: i.i.d. normal(0, σ) truncated to ±3σ (by rejection, the
 * same law as torch's inverse-CDF trunc_normal_), then × √E; all zeros when σ = 0.
 */
export function seededInitialStates(seed: number): InitialStates {
  const rng = new Prng(seed);
  return {
    next(B, S, E, sigma, embedScale) {
      const out = new Float32Array(B * S * E);
      if (sigma === 0) return out;
      for (let i = 0; i < out.length; i++) {
        let z = rng.nextNormal();
        while (Math.abs(z) > 3) z = rng.nextNormal();
        out[i] = f32(f32(z * sigma) * embedScale);
      }
      return out;
    },
  };
}

/**
 * Replays recorded draws (a golden case's `initial_states` [B, T, E], split by call lengths when
 * given): each call takes the next S positions. A call that does not fit the record is an error.
 */
export function injectedInitialStates(states: Float32Array, B: number, T: number, E: number, callLengths: readonly number[] | null = null): InitialStates {
  let offset = 0, call = 0;
  return {
    next(b, S, e) {
      if (b !== B || e !== E) throw new PonderError('HUGINN_STATE_SHAPE', `recorded initial states are [${B}, ${T}, ${E}], a call needs batch ${b} and width ${e}`, { hint: 'the recorded states belong to another input' });
      if (callLengths && (call >= callLengths.length || callLengths[call] !== S)) {
        throw new PonderError('HUGINN_STATE_SHAPE', `initial-state call ${call} needs ${S} positions, the record has ${call < callLengths.length ? callLengths[call] : 'no further call'}`, { hint: 'the generation made different calls than the recorded run (check num_steps, max_new_tokens, strategy)' });
      }
      if (offset + S > T) throw new PonderError('HUGINN_STATE_SHAPE', `recorded initial states exhausted: ${T} positions, call ${call} needs ${offset + S}`, { hint: 'the generation made more calls than the recorded run' });
      const out = new Float32Array(B * S * E);
      for (let bb = 0; bb < B; bb++) out.set(states.subarray((bb * T + offset) * E, (bb * T + offset + S) * E), bb * S * E);
      offset += S; call++;
      return out;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The model

/** Where a call's tokens sit: RoPE rows and (optionally) the KV cache they are filed in. */
export interface CallContext {
  /** RoPE position of each of the call's S positions (shared by all batch rows) */
  readonly positions: Int32Array;
  readonly cache: HuginnCache | null;
  /** [B, S]: when given, the FLOPs of everything that runs are added per position (multiply-add = 2; attention counts the keys each query sees) */
  readonly flops?: Float64Array;
}

/** Intermediate tensors a forward can capture (copies; [B,S,E] each). */
export interface ForwardTrace {
  embedsScaled?: Float32Array;
  preludeLayers: Float32Array[];
  adapterOut: Float32Array[];
  states: Float32Array[];
  codaOut?: Float32Array;
}

export interface ForwardOptions {
  /** token ids [B, S] */
  readonly ids: ArrayLike<number>;
  readonly B: number;
  readonly S: number;
  /** n, or (n, k): n + k iterations (upstream's no-grad/grad split; identical at inference) */
  readonly numSteps: number | readonly [number, number];
  /** σ multiplier of the random initial state; 0 gives zeros. Default 1. */
  readonly initScale?: number;
  /** s₀ [B, S, E]; replaces the random draw (upstream `input_states`) */
  readonly inputStates?: Float32Array | null;
  /** where random s₀ come from when no inputStates are given (default: the model's seeded PRNG) */
  readonly initialStates?: InitialStates;
  readonly cache?: HuginnCache | null;
  /** RoPE rows of the S positions (upstream cache_position); default 0..S−1 */
  readonly positions?: Int32Array;
  /** 'all' → logits [B, S, V]; 'last' → [B, V] of the last position. Default 'all'. */
  readonly logits?: 'all' | 'last';
  readonly trace?: ForwardTrace;
}

export interface ForwardResult {
  /** [B, S, V] or [B, V] (see ForwardOptions.logits) */
  readonly logits: Float32Array;
  /** ln_f(s_n) [B, S, E]: upstream `latent_states`, the coda's input */
  readonly latentStates: Float32Array;
  /** s_n [B, S, E], before ln_f */
  readonly finalState: Float32Array;
}

/** Number of iterations for num_steps given as n or (n, k). */
export function totalSteps(numSteps: number | readonly [number, number]): number {
  const parts = typeof numSteps === 'number' ? [numSteps] : [...numSteps];
  const total = parts.reduce((a, b) => a + b, 0);
  if (parts.length < 1 || parts.length > 2 || parts.some((n) => !Number.isInteger(n) || n < 0) || !(total <= LIMITS.depth)) {
    throw new PonderError('HUGINN_NUM_STEPS', `num_steps ${JSON.stringify(numSteps)} is not a non-negative integer or a pair of them, at most ${LIMITS.depth} in all (${limitNote('depth')})`, { field: 'num_steps', hint: 'pass n, or [n, k] for n + k iterations' });
  }
  return total;
}

const bf16Scratch = new Float32Array(1);
const bf16ScratchBits = new Uint32Array(bf16Scratch.buffer);

/** Rounds x[0..n) to the nearest bf16 value (ties to even), in place; NaN stays NaN. */
export function roundToBf16(x: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    if (Number.isNaN(v)) continue;
    bf16Scratch[0] = v;
    const u = bf16ScratchBits[0];
    bf16ScratchBits[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 0) & 0xffff0000;
    x[i] = bf16Scratch[0];
  }
}

export class HuginnModel {
  private readonly ws: Workspace;
  private readonly bf16: boolean; // round activations to bf16 (LoadOptions.activations)
  private readonly cos: Float32Array; // [blockSize, hd/2]
  private readonly sin: Float32Array;
  /** the default source of random initial states (our PRNG) */
  readonly defaultInitialStates: InitialStates;
  /** our PRNG for the "randomized" cache lookup */
  readonly random: Prng;

  /** kvDtype: how this model's KV caches store keys and values (the memory plan's; loadModel's kvDtype) */
  constructor(readonly config: HuginnConfig, readonly runtime: Runtime, private readonly w: HuginnWeights, seed: number, readonly activations: 'f32' | 'bf16' = 'f32',
              readonly kvDtype: KvDType = 'f32') {
    this.ws = new Workspace(runtime);
    const t = ropeTables(runtime, config.headDim, config.blockSize, config.ropeBase);
    this.cos = t.cos; this.sin = t.sin;
    this.bf16 = activations === 'bf16';
    if (this.bf16) { roundToBf16(this.cos, this.cos.length); roundToBf16(this.sin, this.sin.length); } // upstream's bf16 buffer
    this.defaultInitialStates = seededInitialStates(seed);
    this.random = new Prng((seed ^ 0x5bd1e995) >>> 0);
  }

  /** A fresh KV cache with this lookup strategy ("full", "latest-m4-compress-s4", ...). */
  newCache(strategy = 'full'): HuginnCache {
    return new HuginnCache(strategy, (n) => this.random.nextIndex(n), this.kvDtype, { prelude: this.config.nPrelude, core: this.config.nCore });
  }

  /**
   * The checkpoint's persistent freqs_cis buffer must hold this config's RoPE table: we recompute
   * the table in f32 (as upstream does at init) and check the stored one agrees within its dtype's
   * rounding, so a checkpoint with another rope_base or layout is reported instead of run.
   */
  verifyFreqsCis(raw: TensorArray, dtype: string, label: string): void {
    const half = this.config.headDim / 2;
    const tol = dtype === 'F32' ? 1e-5 : 1e-2;
    const stored = new Float32Array(raw.length); // [blockSize, half, 2]
    widenFloats(dtype as FloatDType, raw, 0, raw.length, stored);
    for (let p = 0; p < this.config.blockSize; p++) {
      for (let i = 0; i < half; i++) {
        const o = (p * half + i) * 2;
        if (Math.abs(stored[o] - this.cos[p * half + i]) > tol || Math.abs(stored[o + 1] - this.sin[p * half + i]) > tol) {
          throw new PonderError('HUGINN_FREQS_CIS', `${label}: freqs_cis at position ${p}, pair ${i} is (${stored[o]}, ${stored[o + 1]}), the config's RoPE table has (${this.cos[p * half + i]}, ${this.sin[p * half + i]})`, { tensor: 'freqs_cis', path: label, hint: 'rope_base, block_size or n_heads in config.json do not match the checkpoint' });
        }
      }
    }
  }

  // ---- building blocks (upstream embed_inputs / iterate_one_step / predict_from_latents) ----

  private checkCall(ids: ArrayLike<number> | null, B: number, S: number, positions: Int32Array): void {
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(S) || S < 1) throw new PonderError('HUGINN_INPUT', `batch ${B} × length ${S} is not a non-empty call`, { hint: 'pass at least one token' });
    if (positions.length !== S) throw new PonderError('HUGINN_INPUT', `${positions.length} positions for ${S} tokens`, { hint: 'give one RoPE position per token' });
    for (const p of positions) {
      if (p < 0) throw new PonderError('HUGINN_INPUT', `position ${p} is negative`, { hint: 'positions count from 0' });
      checkContext(p + 1, this.config.blockSize, `position ${p}`, 'block_size');
    }
    if (ids) {
      if (ids.length !== B * S) throw new PonderError('HUGINN_INPUT', `${ids.length} ids for batch ${B} × length ${S}`, { hint: 'ids are [B, S] row-major' });
      checkTokenIds(ids, this.config.vocabSize);
    }
  }

  private defaultPositions(S: number): Int32Array {
    return Int32Array.from({ length: S }, (_, i) => i);
  }

  /** Embedding × √E then the prelude (slots 0..P−1). Returns e [B, S, E]. */
  embedInputs(ids: ArrayLike<number>, B: number, S: number, ctx: CallContext, trace?: ForwardTrace): Float32Array {
    this.checkCall(ids, B, S, ctx.positions);
    const { nEmbd: E } = this.config;
    const M = B * S;
    const x = this.ws.f32('x', M * E);
    this.w.wte.rows(ids, x);
    const k = this.runtime.kernels;
    k.scale(x, this.config.embedScale, x, M * E);
    this.round(x, M * E);
    if (trace) trace.embedsScaled = x.slice(0, M * E);
    this.w.prelude.forEach((blk, i) => {
      this.sandwich(blk, x, B, S, ctx, i);
      if (trace) trace.preludeLayers.push(x.slice(0, M * E));
    });
    return x.slice(0, M * E);
  }

  /**
   * One recurrence (0-based `step`): s' = core(adapter(concat(s, e))), core layer j filed in cache
   * slot P + step·R + j. Returns s' [B, S, E]; `adapterOut` receives the adapter output when given.
   */
  coreStep(e: Float32Array, state: Float32Array, B: number, S: number, step: number, ctx: CallContext, adapterOut?: Float32Array[]): Float32Array {
    const { nEmbd: E, nPrelude: P, nCore: R } = this.config;
    const M = B * S;
    if (e.length !== M * E || state.length !== M * E) throw new PonderError('HUGINN_STATE_SHAPE', `state has ${state.length} values, embedding ${e.length}; [${B}, ${S}, ${E}] = ${M * E} expected`, { hint: 'input_states must be [B, S, n_embd]' });
    const cat = this.ws.f32('cat', M * 2 * E);
    for (let m = 0; m < M; m++) { // state first, embedding second
      cat.set(state.subarray(m * E, (m + 1) * E), m * 2 * E);
      cat.set(e.subarray(m * E, (m + 1) * E), m * 2 * E + E);
    }
    const x = this.ws.f32('x', M * E);
    this.runtime.kernels.linear(x, cat, this.w.adapter, M, this.w.adapterBias);
    this.round(x, M * E);
    if (ctx.flops) for (let m = 0; m < M; m++) ctx.flops[m] += 2 * E * 2 * E;
    if (adapterOut) adapterOut.push(x.slice(0, M * E));
    this.w.core.forEach((blk, j) => this.sandwich(blk, x, B, S, ctx, P + step * R + j));
    return x.slice(0, M * E);
  }

  /**
   * ln_f → coda (slots −1..−C) → ln_f → lm_head. rows 'last' computes the head only for each batch
   * row's last position ([B, V]); 'all' gives [B, S, V]. `codaOut` receives the last coda block's output.
   */
  predictFromLatents(state: Float32Array, B: number, S: number, ctx: CallContext, rows: 'all' | 'last' = 'last', trace?: ForwardTrace): { logits: Float32Array; latentStates: Float32Array } {
    const { nEmbd: E, vocabSize: V } = this.config;
    const M = B * S;
    const k = this.runtime.kernels;
    const x = this.ws.f32('x', M * E);
    x.set(state.subarray(0, M * E));
    this.round(x, M * E);
    this.rmsnorm(x, x, this.w.lnF, M);
    const latentStates = x.slice(0, M * E);
    this.w.coda.forEach((blk, c) => this.sandwich(blk, x, B, S, ctx, -(c + 1)));
    if (trace) trace.codaOut = x.slice(0, M * E);
    this.rmsnorm(x, x, this.w.lnF, M);
    let headIn = x, headRows = M;
    if (rows === 'last') {
      headIn = this.ws.f32('headIn', B * E);
      for (let b = 0; b < B; b++) headIn.set(x.subarray((b * S + S - 1) * E, (b * S + S) * E), b * E);
      headRows = B;
    }
    const logits = this.ws.f32('logits', headRows * V);
    k.linear(logits, headIn, this.w.lmHead, headRows);
    if (ctx.flops) for (let b = 0; b < B; b++) for (let s = rows === 'last' ? S - 1 : 0; s < S; s++) ctx.flops[b * S + s] += 2 * V * E;
    this.round(logits, headRows * V);
    return { logits: logits.slice(0, headRows * V), latentStates };
  }

  /** The initial state for a call: zeros at init_scale 0 (upstream), else a draw from `source`. */
  initialState(B: number, S: number, initScale: number, source: InitialStates = this.defaultInitialStates): Float32Array {
    const sigma = this.config.initStd * initScale;
    const s = source.next(B, S, this.config.nEmbd, sigma, this.config.embedScale);
    if (s.length !== B * S * this.config.nEmbd) throw new PonderError('HUGINN_STATE_SHAPE', `initial-state source returned ${s.length} values for [${B}, ${S}, ${this.config.nEmbd}]`, { hint: 'an InitialStates source must return [B, S, n_embd]' });
    return s;
  }

  /** upstream RavenForCausalLM.forward at a fixed number of steps. */
  forward(opts: ForwardOptions): ForwardResult {
    const { B, S } = opts;
    const n = totalSteps(opts.numSteps);
    const ctx: CallContext = { positions: opts.positions ?? this.defaultPositions(S), cache: opts.cache ?? null };
    const e = this.embedInputs(opts.ids, B, S, ctx, opts.trace);
    let s = opts.inputStates ? Float32Array.from(opts.inputStates) : this.initialState(B, S, opts.initScale ?? 1, opts.initialStates);
    if (s.length !== B * S * this.config.nEmbd) throw new PonderError('HUGINN_STATE_SHAPE', `input_states has ${s.length} values, [${B}, ${S}, ${this.config.nEmbd}] expected`, { field: 'input_states', hint: 'input_states must be [B, S, n_embd]' });
    for (let step = 0; step < n; step++) {
      s = this.coreStep(e, s, B, S, step, ctx, opts.trace?.adapterOut);
      opts.trace?.states.push(s.slice());
    }
    const { logits, latentStates } = this.predictFromLatents(s, B, S, ctx, opts.logits ?? 'all', opts.trace);
    return { logits, latentStates, finalState: s };
  }

  // ---- one sandwich block ----

  /**
   * x ← norm4(mlp(norm3(x₁)) + x₁), x₁ = norm2(attn(norm1(x)) + x), in place on x [B·S, E].
   * With a cache, the layer's keys/values are filed under `slot` and attention runs over what the
   * cache returns, aligned lower-right (query i sees returned keys j ≤ i + Tk − S): causal for a
   * prefill, every key for one token, causal_lower_right for several tokens on a non-empty cache.
   */
  private sandwich(blk: SandwichBlock, x: Float32Array, B: number, S: number, ctx: CallContext, slot: number): void {
    const { nEmbd: E, nHeads: H, nKvHeads: Hkv, headDim: hd, intermediateSize: I } = this.config;
    const k = this.runtime.kernels;
    const M = B * S;
    const qDim = H * hd, kvDim = Hkv * hd, qkvDim = qDim + 2 * kvDim;

    const h = this.ws.f32('h', M * E);
    this.rmsnorm(h, x, blk.norm1, M);
    const qkv = this.ws.f32('qkv', M * qkvDim);
    k.linear(qkv, h, blk.wqkv, M);
    this.round(qkv, M * qkvDim);
    const q = this.ws.f32('q', M * qDim), kk = this.ws.f32('k', M * kvDim), v = this.ws.f32('v', M * kvDim);
    for (let m = 0; m < M; m++) {
      const o = m * qkvDim;
      q.set(qkv.subarray(o, o + qDim), m * qDim);
      kk.set(qkv.subarray(o + qDim, o + qDim + kvDim), m * kvDim);
      v.set(qkv.subarray(o + qDim + kvDim, o + qkvDim), m * kvDim);
      if (blk.qBias) {
        const qr = q.subarray(m * qDim, (m + 1) * qDim), kr = kk.subarray(m * kvDim, (m + 1) * kvDim);
        k.add(qr, qr, blk.qBias, qDim);
        k.add(kr, kr, blk.kBias!, kvDim);
        this.round(qr, qDim);
        this.round(kr, kvDim);
      }
    }
    const ropePos = this.ws.i32('ropePos', M);
    for (let b = 0; b < B; b++) ropePos.set(ctx.positions, b * S);
    k.rope(q, M, H, hd, qDim, this.cos, this.sin, ropePos, 'interleaved');
    k.rope(kk, M, Hkv, hd, kvDim, this.cos, this.sin, ropePos, 'interleaved');
    this.round(q, M * qDim);
    this.round(kk, M * kvDim);

    const y = this.ws.f32('y', M * qDim);
    const scale = 1 / Math.sqrt(hd);
    let Tk = S; // keys the call's queries attend over (aligned lower-right: query s sees Tk − S + s + 1)
    if (ctx.cache) {
      const kvDtype = ctx.cache.kvDtype;
      const fresh: CacheEntry[] = [];
      for (let s = 0; s < S; s++) {
        const ek = new Float32Array(B * kvDim), ev = new Float32Array(B * kvDim);
        for (let b = 0; b < B; b++) {
          ek.set(kk.subarray((b * S + s) * kvDim, (b * S + s + 1) * kvDim), b * kvDim);
          ev.set(v.subarray((b * S + s) * kvDim, (b * S + s + 1) * kvDim), b * kvDim);
        }
        // filed in the cache's dtype (rounded to nearest even; the heap twin of the kernels' writes)
        fresh.push({ k: narrowOnHeap(kvDtype, ek), v: narrowOnHeap(kvDtype, ev) });
      }
      const visible = ctx.cache.update(slot, fresh);
      Tk = visible.length;
      const K = kvDtype === 'f32' ? this.ws.f32('K', Tk * kvDim) : this.ws.u16('K', Tk * kvDim);
      const Vv = kvDtype === 'f32' ? this.ws.f32('V', Tk * kvDim) : this.ws.u16('V', Tk * kvDim);
      const { qPos, kPos } = this.lowerRight(S, Tk);
      for (let b = 0; b < B; b++) {
        for (let j = 0; j < Tk; j++) {
          copyKv(K, j * kvDim, visible[j].k, b * kvDim, kvDim);
          copyKv(Vv, j * kvDim, visible[j].v, b * kvDim, kvDim);
        }
        k.attention(y.subarray(b * S * qDim, (b + 1) * S * qDim), q.subarray(b * S * qDim, (b + 1) * S * qDim), K, Vv, S, Tk, H, Hkv, hd, scale, qPos, kPos, null, kvDtype);
      }
    } else {
      const { qPos, kPos } = this.lowerRight(S, S);
      for (let b = 0; b < B; b++) {
        k.attention(y.subarray(b * S * qDim, (b + 1) * S * qDim), q.subarray(b * S * qDim, (b + 1) * S * qDim),
          kk.subarray(b * S * kvDim, (b + 1) * S * kvDim), v.subarray(b * S * kvDim, (b + 1) * S * kvDim), S, S, H, Hkv, hd, scale, qPos, kPos, null);
      }
    }
    this.round(y, M * qDim);
    if (ctx.flops) {
      const linear = 2 * E * (qkvDim + qDim + 3 * I); // qkv, proj, fc (gate and up), mlp proj
      for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) ctx.flops[b * S + s] += linear + 4 * H * hd * (Tk - S + s + 1);
    }
    const a = this.ws.f32('a', M * E);
    k.linear(a, y, blk.proj, M);
    this.round(a, M * E);
    k.add(a, a, x, M * E);
    this.round(a, M * E);
    const x1 = this.ws.f32('x1', M * E);
    this.rmsnorm(x1, a, blk.norm2, M);

    this.rmsnorm(h, x1, blk.norm3, M);
    const fc = this.ws.f32('fc', M * 2 * I);
    k.linear(fc, h, blk.fc, M);
    this.round(fc, M * 2 * I);
    const mid = this.ws.f32('mid', M * I);
    for (let m = 0; m < M; m++) {
      const out = mid.subarray(m * I, (m + 1) * I), gate = fc.subarray(m * 2 * I, m * 2 * I + I), up = fc.subarray(m * 2 * I + I, (m + 1) * 2 * I);
      if (!this.bf16) { k.siluMul(out, gate, up, I); continue; }
      k.silu(out, gate, I); // bf16: silu(g) and the product are each rounded
      roundToBf16(out, I);
      for (let i = 0; i < I; i++) out[i] *= up[i];
      roundToBf16(out, I);
    }
    k.linear(a, mid, blk.mlpProj, M);
    this.round(a, M * E);
    k.add(a, a, x1, M * E);
    this.round(a, M * E);
    this.rmsnorm(x, a, blk.norm4, M);
  }

  /** RMSNorm over [M, E] rows; in bf16 mode the normalised value and its product with the weight are each rounded. */
  private rmsnorm(y: Float32Array, x: Float32Array, weight: Float32Array, M: number): void {
    const { nEmbd: E, normEps } = this.config;
    if (!this.bf16) { this.runtime.kernels.rmsnorm(y, x, weight, M, E, normEps); return; }
    this.runtime.kernels.rmsnorm(y, x, null, M, E, normEps);
    roundToBf16(y, M * E);
    for (let m = 0; m < M; m++) for (let i = 0; i < E; i++) y[m * E + i] *= weight[i];
    roundToBf16(y, M * E);
  }

  /** Rounds x[0..n) to bf16 in bf16-activation mode; nothing in f32 mode. */
  private round(x: Float32Array, n: number): void {
    if (this.bf16) roundToBf16(x, n);
  }

  /** Index positions for the lower-right causal alignment of S queries over Tk keys. */
  private lowerRight(S: number, Tk: number): { qPos: Int32Array; kPos: Int32Array } {
    const qPos = this.ws.i32('qPos', S), kPos = this.ws.i32('kPos', Tk);
    for (let i = 0; i < S; i++) qPos[i] = i + (Tk - S);
    for (let j = 0; j < Tk; j++) kPos[j] = j;
    return { qPos: qPos.subarray(0, S), kPos: kPos.subarray(0, Tk) };
  }
}
