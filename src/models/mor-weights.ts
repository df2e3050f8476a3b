/**
 * MoR's weights: every tensor morTensors lists, declared and checked before any data is read, the
 * memory plan, then bound once per shared parameter. Upstream's state_dict() lists every alias of
 * a shared layer (and its strict load needs them all); a checkpoint saved with shared tensors
 * removed (safetensors' de-duplication) keeps exactly one name per parameter. Both are accepted,
 * consistently: any other mix is a missing-tensor error naming the absent aliases, and aliases
 * stored twice must hold the same values.
 */
import { PonderError } from '../errors.js';
import type { LinearWeight } from '../kernels/kernels.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Embedding } from './inputs.js';
import type { TensorSpec } from './family.js';
import { MOR_LINEARS, MOR_NORMS, morTensors, type MorConfig, type MorLayout } from './mor-config.js';
import type { Placement } from './placement.js';
import { WeightBinder, type WeightSource } from './weights.js';

export interface LayerWeights {
  readonly inputNorm: Float32Array; // [H]
  readonly postNorm: Float32Array;  // [H]
  readonly q: LinearWeight; readonly k: LinearWeight; readonly v: LinearWeight; readonly o: LinearWeight;
  readonly gate: LinearWeight; readonly up: LinearWeight; readonly down: LinearWeight;
}

export interface RouterWeights { readonly linear: LinearWeight | null; readonly mlpIn: LinearWeight | null; readonly mlpOut: LinearWeight | null; readonly out: number }

export interface MorWeights {
  /** per layout site; sites sharing a parameter hold the same objects */
  readonly layers: LayerWeights[];
  readonly routers: RouterWeights[];
  readonly routerBias: Float32Array | null; // [R] token-choice loss-free balancing
  readonly embedding: Embedding; // [V, H] in its stored dtype (or quantized)
  readonly lmHead: LinearWeight; // [V, H]
  readonly finalNorm: Float32Array; // [H]
}

/** Checks `source` against the config, then binds (the memory plan ran before: `placement`). */
export function bindMorWeights(cfg: MorConfig, layout: MorLayout, source: WeightSource, runtime: Runtime, placement: Placement | null): MorWeights {
  const d = cfg.dims, H = d.hidden, R = cfg.numRecursion;
  const binder = new WeightBinder(source, runtime, placement);
  // alias groups: a parameter's canonical name (its owner's) → every state_dict name of it
  const groups = new Map<string, { names: string[]; shape: readonly number[]; bind: TensorSpec['bind'] }>();
  for (const t of morTensors(cfg, layout)) {
    if (t.optional) { binder.need(t.name, t.shape, { optional: true, bind: t.bind }); continue; } // a tied lm_head
    const canonical = t.sameAs ?? t.name;
    if (!groups.has(canonical)) {
      groups.set(canonical, { names: [], shape: t.shape, bind: t.bind });
    }
    groups.get(canonical)!.names.push(t.name);
  }
  const shared = [...groups.values()].filter((g) => g.names.length > 1);
  const deduplicated = shared.length > 0 && shared.every((g) => g.names.filter((n) => source.info(n) !== undefined).length === 1);
  const stored = new Map<string, string>(); // canonical name → the name its values are read from
  for (const [canonical, g] of groups) {
    if (deduplicated && g.names.length > 1) {
      const present = g.names.find((n) => source.info(n) !== undefined)!;
      binder.need(present, g.shape, { bind: g.bind });
      stored.set(canonical, present);
    } else {
      for (const n of g.names) binder.need(n, g.shape, { bind: g.bind });
      stored.set(canonical, canonical);
    }
  }

  binder.finish();
  if (!deduplicated) checkAliases(source, binder, shared.map((g) => g.names));

  const sites = layout.sites;
  const bound = new Map<number, Omit<LayerWeights, 'inputNorm' | 'postNorm'>>();
  const norms = new Map<number, [Float32Array, Float32Array]>();
  const layers: LayerWeights[] = [];
  for (const s of sites) {
    if (!norms.has(s.normOwner)) {
      const p = sites[s.normOwner].path;
      norms.set(s.normOwner, [binder.f32(stored.get(p + MOR_NORMS[0])!), binder.f32(stored.get(p + MOR_NORMS[1])!)]);
    }
    if (!bound.has(s.linearOwner)) {
      const [q, k, v, o, gate, up, down] = MOR_LINEARS.map((n) => binder.linear(stored.get(sites[s.linearOwner].path + n)!));
      bound.set(s.linearOwner, { q, k, v, o, gate, up, down });
    }
    const [inputNorm, postNorm] = norms.get(s.normOwner)!;
    layers.push({ ...bound.get(s.linearOwner)!, inputNorm, postNorm });
  }
  const routerOut = cfg.variant === 'token' ? R : 1;
  const routers = layout.routerPaths.map((rp): RouterWeights => (cfg.routerType === 'linear'
    ? { linear: binder.linear(rp + 'mor_router.router.weight'), mlpIn: null, mlpOut: null, out: routerOut }
    : { linear: null, mlpIn: binder.linear(rp + 'mor_router.router.0.weight'), mlpOut: binder.linear(rp + 'mor_router.router.2.weight'), out: routerOut }));
  const weights: MorWeights = {
    layers, routers,
    routerBias: cfg.variant === 'token' && cfg.tokenLossFree ? binder.f32(layout.routerPaths[0] + 'router_bias') : null,
    embedding: binder.embedding('model.embed_tokens.weight'),
    // the head reads lm_head.weight when stored: with tie_word_embeddings it holds the embedding's values, and a
    // checkpoint whose model did not tie them (the recursive baseline's class) keeps its own head; a tied head
    // that was not saved (save_pretrained drops it) is the embedding
    lmHead: binder.linear(source.info('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight', 'head'),
    finalNorm: binder.f32('model.norm.weight'),
  };
  return weights;
}

/** Every alias of a shared tensor must hold the same values (upstream aliases one Parameter). */
function checkAliases(source: WeightSource, binder: WeightBinder, groups: string[][]): void {
  const problems: string[] = [];
  // a quantized alias compares its codes, scales and biases
  const stored = (name: string): Uint8Array => {
    if (!source.info(name)!.quant) return bytesOf(binder.raw(name));
    const q = source.readQuantized!(name);
    return new Uint8Array([...bytesOf(q.codes), ...bytesOf(q.scales), ...bytesOf(q.biases)]);
  };
  for (const g of groups) {
    const ref = stored(g[0]);
    for (const name of g.slice(1)) {
      const other = stored(name);
      let same = ref.length === other.length && source.info(name)!.dtype === source.info(g[0])!.dtype;
      for (let i = 0; same && i < ref.length; i++) if (ref[i] !== other[i]) same = false;
      if (!same) problems.push(`${name} differs from ${g[0]} (they alias one shared parameter)`);
    }
  }
  if (problems.length > 0) {
    throw new PonderError('BIND_MISMATCH', `${source.label}: shared weights differ (${problems.length}):\n  ${problems.join('\n  ')}`,
      { path: source.label, tensor: problems[0].split(' ')[0], hint: 'the checkpoint does not match the sharing strategy in the config (recursive.sharing / ln_share), or was trained with unshared attention (upstream issue #17)' });
  }
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
