/**
 * Next-token selection from one row of logits: repetition penalty, then greedy or
 * temperature → softmax → top-k → top-p → min-p → renormalise → one seeded draw.
 *
 * The order and the meaning of each filter follow upstream Huginn's `_sample_next_token` and
 * `_apply_repetition_penalty` (recpre/raven_modeling_minimal.py); spec/sampling.md gives the exact
 * rules, including what we decide where upstream defines nothing (NaN logits, ties, top_p = 1).
 *
 * One `Sampler` per generation: it owns its scratch buffers (allocated once, for the vocabulary
 * size) and its PRNG, so `sample` allocates nothing per token.
 */
import { describeValue, optionsArgument, PonderError } from '../errors.js';
import { LIMITS, limitNote } from '../limits.js';
import { Prng, checkSeed } from './prng.js';

export interface SamplingOptions {
  /** Divides the logits before the softmax. 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep the k most probable tokens (ties at the k-th probability are all kept). Default: off. */
  topK?: number;
  /** Keep the smallest prefix of the sorted distribution whose mass exceeds topP, in (0, 1]. Default 1 (off). */
  topP?: number;
  /** Drop tokens whose probability is below minP × the largest remaining one, in [0, 1]. Default 0 (off). */
  minP?: number;
  /** CTRL-style penalty on every id already in the sequence (prompt included), > 0. Default 1 (off). */
  repetitionPenalty?: number;
  /** uint32 seed of the draw stream. Default 0, so a run is reproducible unless asked otherwise. */
  seed?: number;
}

/** Options with every default filled in; what a trace should report as "the sampling used". */
export interface ResolvedSamplingOptions {
  temperature: number;
  topK: number | null;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  seed: number;
}

function badArg(field: string, message: string, hint: string): PonderError {
  return new PonderError('ARG_INVALID', message, { field, hint });
}

/**
 * Checks every option against its documented range and fills in defaults. Nothing is clamped:
 * an out-of-range value is an ARG_INVALID error whose `field` is the option name.
 */
export function resolveSamplingOptions(samplingOptions: SamplingOptions, vocabSize: number): ResolvedSamplingOptions {
  const options = optionsArgument(samplingOptions, 'sampling options');
  if (!Number.isInteger(vocabSize) || vocabSize <= 0 || vocabSize > LIMITS.vocab) {
    throw badArg('vocabSize', `vocabSize must be an integer in [1, ${LIMITS.vocab}] (${limitNote('vocab')}), got ${describeValue(vocabSize)}`, 'pass the number of logits per row');
  }
  const temperature = options.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw badArg('temperature', `temperature must be a finite number ≥ 0, got ${describeValue(temperature)}`,
      'use temperature 0 for greedy decoding, or a positive value such as 0.7 to sample');
  }
  const topK = options.topK ?? null;
  if (topK !== null && (typeof topK !== 'number' || !Number.isInteger(topK) || topK <= 0 || topK > vocabSize)) {
    throw badArg('topK', `topK must be an integer in [1, ${vocabSize}] (the vocabulary size), got ${describeValue(topK)}`,
      'leave topK unset to disable it');
  }
  const topP = options.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
    throw badArg('topP', `topP must be in (0, 1], got ${describeValue(topP)}`, 'use topP 1 (the default) to disable nucleus filtering');
  }
  const minP = options.minP ?? 0;
  if (typeof minP !== 'number' || !(minP >= 0 && minP <= 1)) {
    throw badArg('minP', `minP must be in [0, 1], got ${describeValue(minP)}`, 'use minP 0 (the default) to disable it');
  }
  const repetitionPenalty = options.repetitionPenalty ?? 1;
  if (typeof repetitionPenalty !== 'number' || !Number.isFinite(repetitionPenalty) || repetitionPenalty <= 0) {
    throw badArg('repetitionPenalty', `repetitionPenalty must be a finite number > 0, got ${describeValue(repetitionPenalty)}`,
      'use 1 (the default) for no penalty; values above 1 discourage repeats');
  }
  // it is applied in float32 (as torch does): one that rounds to 0 or Infinity would turn logits into ±Infinity or 0
  const penalty32 = Math.fround(repetitionPenalty);
  if (penalty32 < MIN_NORMAL_F32 || penalty32 === Infinity) {
    throw badArg('repetitionPenalty', `repetitionPenalty ${String(repetitionPenalty)} is ${penalty32 === Infinity ? 'Infinity' : penalty32 === 0 ? '0' : 'subnormal'} in float32, in which it is applied`,
      'use a value near 1 (1.1 to 1.5 is usual); 1 means no penalty');
  }
  const seed = options.seed ?? 0;
  checkSeed(seed);
  return { temperature, topK, topP, minP, repetitionPenalty, seed };
}

/**
 * Sampling options from a Hugging Face generation_config.json object, as transformers'
 * GenerationConfig would run them through upstream's `_sample_next_token`:
 * - `do_sample` not true → greedy (temperature 0);
 * - an absent key takes transformers' default (top_k 50, top_p 1, temperature 1, min_p off);
 * - an explicit null is Python's None, and a 0 is falsy: upstream's `if top_k:` skips the filter;
 * - `temperature` 0 or null while sampling means "do not divide", i.e. temperature 1.
 * Unknown fields are ignored; a known field of the wrong type is CFG_FIELD, and so is
 * dry_multiplier > 0 (upstream Huginn's DRY penalty, not implemented here) rather than ignored.
 */
export function samplingFromGenerationConfig(generationConfig: Record<string, unknown>, seed?: number): SamplingOptions {
  if (generationConfig === null || typeof generationConfig !== 'object' || Array.isArray(generationConfig)) {
    throw new PonderError('ARG_INVALID', `samplingFromGenerationConfig needs generation_config.json as an object, got ${describeValue(generationConfig)}`, { field: 'config', hint: 'pass JSON.parse of generation_config.json' });
  }
  const config = generationConfig;
  /** The number, null for an explicit null, undefined when absent. */
  const field = (key: string): number | null | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return v;
    if (typeof v !== 'number') {
      throw new PonderError('CFG_FIELD', `generation_config.json: "${key}" must be a number or null, got ${JSON.stringify(v)}`,
        { path: 'generation_config.json', field: key, hint: 'fix or remove the field in generation_config.json' });
    }
    return v;
  };
  const dry = field('dry_multiplier');
  if (typeof dry === 'number' && dry > 0) {
    throw new PonderError('CFG_FIELD', `generation_config.json: "dry_multiplier" is ${dry}, asking for the DRY n-gram penalty; ponder supports only 0 (off)`, {
      path: 'generation_config.json',
      field: 'dry_multiplier',
      hint: 'set dry_multiplier to 0 or remove it, or pass sampling options explicitly instead of the model\'s generation_config.json',
    });
  }
  const penalty = field('repetition_penalty');
  const repetitionPenalty = penalty === null ? undefined : penalty;
  if (config.do_sample !== true) return { temperature: 0, repetitionPenalty, seed };
  const temperature = field('temperature');
  const topK = field('top_k');
  const topP = field('top_p');
  const minP = field('min_p');
  return {
    temperature: temperature === undefined || temperature === null || temperature === 0 ? 1 : temperature,
    topK: topK === undefined ? 50 : topK === null || topK === 0 ? undefined : topK,
    topP: topP === undefined || topP === null || topP === 0 ? 1 : topP,
    minP: minP === undefined || minP === null ? 0 : minP,
    repetitionPenalty,
    seed,
  };
}

/**
 * Index of the largest logit, the lowest index among equal maxima (torch.argmax on CPU does the
 * same). Throws NUM_NONFINITE if any logit is NaN or +Infinity, or if every logit is -Infinity,
 * rather than returning an index that means nothing.
 */
export function argmaxFinite(logits: ArrayLike<number>): number {
  checkLogitsFinite(logits);
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** NaN or +Infinity anywhere, or no finite logit at all, is NUM_NONFINITE. -Infinity marks a banned token. */
/** The smallest normal float32, 2^-126. */
const MIN_NORMAL_F32 = 2 ** -126;

function checkLogitsFinite(logits: ArrayLike<number>): void {
  let finiteCount = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (Number.isNaN(x) || x === Infinity) {
      throw new PonderError('NUM_NONFINITE', `logits[${i}] is ${String(x)}: the model produced a non-finite value`, {
        tensor: 'logits',
        hint: 'the weights or the input state overflowed; try --kernels scalar to rule out a kernel fault, and check the model with `ponder conform`',
      });
    }
    if (x !== -Infinity) finiteCount++;
  }
  if (finiteCount === 0) {
    throw new PonderError('NUM_NONFINITE', `every one of the ${logits.length} logits is -Infinity: no token can be chosen`, {
      tensor: 'logits',
      hint: 'a mask or bias removed every token; check stop/ban lists and the model output',
    });
  }
}

export class Sampler {
  readonly vocabSize: number;
  readonly options: ResolvedSamplingOptions;
  private readonly prng: Prng;
  // Scratch, all (vocabSize,), reused every token.
  private readonly penalized: Float32Array; // logits after the repetition penalty, f32 like upstream
  private readonly probs: Float64Array; // the distribution being filtered, then the final one
  private readonly order: Uint32Array; // token ids sorted by descending probability (ties: lower id first)
  private readonly seen: Uint8Array; // marks ids (penalised once; top-k/top-p survivors), all zero between calls
  private readonly selectScratch: Float64Array; // nonzero probabilities, reordered by the k-th-largest selection

  constructor(vocabSize: number, options: SamplingOptions = {}) {
    this.options = resolveSamplingOptions(options, vocabSize);
    this.vocabSize = vocabSize;
    this.prng = new Prng(this.options.seed);
    this.penalized = new Float32Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
    this.order = new Uint32Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
    this.selectScratch = new Float64Array(vocabSize);
  }

  /** Restart the draw stream (from `seed`, or from the configured seed) without reallocating. */
  reset(seed: number = this.options.seed): void {
    this.prng.reseed(seed);
  }

  /**
   * The next token id. `context` is every id in the sequence so far (prompt and generated), used
   * only by the repetition penalty. `logits` is not modified. Greedy decoding draws no random
   * number, so it does not advance the stream.
   */
  sample(logits: ArrayLike<number>, context: ArrayLike<number> = []): number {
    if (this.options.temperature === 0) {
      this.applyRepetitionPenalty(logits, context);
      return argmaxFinite(this.penalized);
    }
    const probs = this.distribution(logits, context);
    // One uniform draw against the cumulative mass, walking ids in ascending order.
    let total = 0;
    for (let i = 0; i < probs.length; i++) total += probs[i];
    const target = this.prng.nextFloat() * total;
    let cumulative = 0;
    let lastNonzero = -1;
    for (let i = 0; i < probs.length; i++) {
      if (probs[i] === 0) continue;
      cumulative += probs[i];
      lastNonzero = i;
      if (target < cumulative) return i;
    }
    // Only reachable when rounding left `cumulative` a hair below `target`.
    return lastNonzero;
  }

  /**
   * The distribution `sample` draws from, after every filter and the renormalisation: a view of
   * the sampler's scratch buffer, valid until the next call. For greedy decoding it is one-hot.
   */
  distribution(logits: ArrayLike<number>, context: ArrayLike<number> = []): Float64Array {
    const { temperature, topK, topP, minP } = this.options;
    const V = this.vocabSize;
    const probs = this.probs;
    this.applyRepetitionPenalty(logits, context);
    const x = this.penalized;
    if (temperature === 0) {
      probs.fill(0);
      probs[argmaxFinite(x)] = 1;
      return probs;
    }

    // softmax(x / temperature), in float64
    let maxScaled = -Infinity;
    for (let i = 0; i < V; i++) if (x[i] / temperature > maxScaled) maxScaled = x[i] / temperature;
    if (!Number.isFinite(maxScaled)) {
      // A temperature so small that x / T overflowed (to +Infinity, or to -Infinity when every
      // logit is negative): its limit is greedy decoding.
      probs.fill(0);
      probs[argmaxFinite(x)] = 1;
      return probs;
    }
    let sum = 0;
    for (let i = 0; i < V; i++) {
      const e = Math.exp(x[i] / temperature - maxScaled);
      probs[i] = e;
      sum += e;
    }
    for (let i = 0; i < V; i++) probs[i] /= sum;

    if (topK !== null || topP < 1) this.applyTopKTopP(probs);

    if (minP > 0) {
      let maxProb = 0;
      for (let i = 0; i < V; i++) if (probs[i] > maxProb) maxProb = probs[i];
      const floor = minP * maxProb;
      for (let i = 0; i < V; i++) if (probs[i] < floor) probs[i] = 0;
    }

    // Renormalise; upstream clamps the sum at 1e-10 (never reached: the largest probability survives).
    let keptSum = 0;
    for (let i = 0; i < V; i++) keptSum += probs[i];
    keptSum = Math.max(keptSum, 1e-10);
    for (let i = 0; i < V; i++) probs[i] /= keptSum;
    return probs;
  }

  /**
   * top-k then top-p on `probs`, in place. Both keep a prefix of the ids sorted by descending
   * probability (ties: lower id first), so only the candidates that can be in that prefix are
   * sorted, not the whole vocabulary (a full sort of 65k entries costs ~15 ms per token):
   * - with top-k, the candidates are the ids with p ≥ the k-th largest p (found by selection),
   *   which is exactly the top-k survivor set, ties included;
   * - with top-p alone, the ids with p ≥ (1 − topP) / V: the rest hold less than 1 − topP of the
   *   mass, so the nucleus cut falls among the candidates. Should rounding leave the cut beyond
   *   them, the full sort is done instead.
   */
  private applyTopKTopP(probs: Float64Array): void {
    const { topK, topP } = this.options;
    const V = this.vocabSize;
    let nonzero = 0;
    for (let i = 0; i < V; i++) if (probs[i] > 0) this.selectScratch[nonzero++] = probs[i];
    const useTopK = topK !== null && topK < nonzero;
    // Zero probabilities below the k-th largest; ties with it are kept (torch.where(probs < min_values)).
    const floor = useTopK ? kthLargest(this.selectScratch, nonzero, topK) : topP < 1 ? (1 - topP) / V : 0;

    let count = this.collectSorted(probs, floor);
    let kept = count;
    if (topP < 1) {
      let nucleus = this.nucleusLength(probs, count, topP);
      if (nucleus === count && !useTopK && count < nonzero) {
        // the cut did not fall among the candidates after all: redo with every nonzero id
        count = this.collectSorted(probs, Number.MIN_VALUE);
        nucleus = this.nucleusLength(probs, count, topP);
      }
      kept = nucleus;
    }
    // keep order[0 .. kept), zero everything else
    const survivor = this.seen; // all zero between calls
    for (let r = 0; r < kept; r++) survivor[this.order[r]] = 1;
    for (let i = 0; i < V; i++) {
      if (survivor[i]) survivor[i] = 0;
      else probs[i] = 0;
    }
  }

  /** order[0 .. count) = ids with probs ≥ floor (and > 0), by descending probability, ties lower id first. */
  private collectSorted(probs: Float64Array, floor: number): number {
    let count = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i] > 0 && probs[i] >= floor) this.order[count++] = i;
    this.order.subarray(0, count).sort((a, b) => probs[b] - probs[a] || a - b);
    return count;
  }

  /**
   * How many of order[0 .. count) top-p keeps: the cumulative sum of the current, not
   * renormalised, probabilities; entries whose cumulative mass exceeds topP are dropped, except the first.
   */
  private nucleusLength(probs: Float64Array, count: number, topP: number): number {
    let cumulative = 0;
    let nucleus = 0;
    while (nucleus < count) {
      cumulative += probs[this.order[nucleus]];
      if (nucleus > 0 && cumulative > topP) break;
      nucleus++;
    }
    return nucleus;
  }

  /** penalized = logits, then each distinct id in `context`: logit < 0 → × penalty, else ÷ penalty. */
  private applyRepetitionPenalty(logits: ArrayLike<number>, context: ArrayLike<number>): void {
    const V = this.vocabSize;
    if (logits.length !== V) {
      throw new PonderError('ARG_INVALID', `logits has ${logits.length} entries but the sampler was built for a vocabulary of ${V}`, {
        field: 'logits',
        hint: 'pass one row of logits, [vocab_size]',
      });
    }
    checkLogitsFinite(logits);
    const x = this.penalized;
    for (let i = 0; i < V; i++) x[i] = logits[i];
    // torch multiplies an f32 tensor by a Python float in f32: round the penalty to f32 first, so
    // the f64 product / quotient rounded to f32 below is exactly torch's f32 result.
    const penalty = Math.fround(this.options.repetitionPenalty);
    if (this.options.repetitionPenalty === 1 || context.length === 0) return;
    for (let j = 0; j < context.length; j++) {
      const id = context[j];
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        for (let r = 0; r < j; r++) this.seen[context[r]] = 0;
        throw new PonderError('ARG_INVALID', `context[${j}] = ${describeValue(id)} is not a token id in [0, ${V})`, {
          field: 'context',
          hint: 'the context passed for the repetition penalty must hold token ids of this model',
        });
      }
      if (this.seen[id]) continue;
      this.seen[id] = 1;
      x[id] = x[id] < 0 ? x[id] * penalty : x[id] / penalty;
      if (!Number.isFinite(x[id])) {
        for (let r = 0; r <= j; r++) this.seen[context[r]] = 0;
        throw new PonderError('NUM_NONFINITE', `logits[${id}] = ${String(logits[id])} with repetitionPenalty ${String(this.options.repetitionPenalty)} is ${String(x[id])} in float32`, {
          tensor: 'logits', field: 'repetitionPenalty',
          hint: 'a penalty this far from 1 overflows the penalised logits; use a value near 1 (1.1 to 1.5 is usual)',
        });
      }
    }
    for (let j = 0; j < context.length; j++) this.seen[context[j]] = 0;
  }
}

/**
 * The k-th largest (k ≥ 1) of values[0 .. n): quickselect with a median-of-three pivot and Hoare
 * partitioning in descending order. Reorders values[0 .. n).
 */
function kthLargest(values: Float64Array, n: number, k: number): number {
  const target = k - 1; // its index once values[0 .. n) is sorted descending
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const a = values[lo];
    const b = values[(lo + hi) >>> 1];
    const c = values[hi];
    const pivot = a > b ? (b > c ? b : a > c ? c : a) : a > c ? a : b > c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] > pivot) i++;
      while (values[j] < pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    // now values[lo .. j] ≥ pivot ≥ values[i .. hi], and values[j+1 .. i-1] == pivot
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return values[target];
  }
  return values[lo];
}
