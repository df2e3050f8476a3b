/**
 * `ponder quantize`, the part that decides and computes (the file side is src/node/quantize.ts):
 * which tensors of a checkpoint become MLX affine-quantized modules (spec/quantization.md), and
 * the codes, scales and biases of one weight matrix.
 *
 * Quantized: every tensor the family binds as a Linear or an embedding (TensorSpec.bind) whose
 * input width is a multiple of the group size, unless a --keep pattern (or the default kept set)
 * matches it. Norms, biases and buffers are never quantized (MLX quantizes only Linear and
 * Embedding modules).
 */
import { PonderError } from '../errors.js';
import type { DType } from '../format/safetensors.js';
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../kernels/scalar.js';
import type { TensorSpec } from '../models/family.js';

export interface QuantizeSettings {
  readonly bits: 8 | 4;
  readonly groupSize: number;
  /** glob patterns (`*` = any text) on module paths (the tensor name without `.weight`) kept in their dtype */
  readonly keep: readonly string[];
}

/**
 * Kept in their stored dtype by default: the depth decisions (Ouro's exit gate, MoR's routers) —
 * a few thousand parameters whose quantization error moves exit steps and selections directly;
 * bench/RESULTS.md (quality per depth) has the numbers the choice rests on.
 */
export const DEFAULT_KEEP: readonly string[] = ['*early_exit_gate', '*mor_router*', '*router*'];

export function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$');
  return re.test(text);
}

export type TensorPlan =
  | { readonly kind: 'copy'; readonly name: string; readonly reason?: string }
  | { readonly kind: 'quantize'; readonly name: string; readonly module: string; readonly N: number; readonly K: number };

/** The module path of `name` when the family binds it as a 2-D Linear or embedding weight (what
 * quantize can quantize, or --keep keep), else null. */
function moduleOf(spec: TensorSpec | undefined, name: string): string | null {
  if (!spec || (spec.bind !== 'linear' && spec.bind !== 'embedding') || spec.shape.length !== 2 || !name.endsWith('.weight')) return null;
  return name.slice(0, -'.weight'.length);
}

/** Whether a --keep pattern names `module`, by its path or by its tensor name. */
function keepMatches(pattern: string, module: string): boolean {
  return globMatch(pattern, module) || globMatch(pattern, `${module}.weight`);
}

/** What happens to each stored tensor (`names` in file order, `dtypeOf` their dtypes). */
export function planQuantization(specs: readonly TensorSpec[], names: readonly string[], dtypeOf: (name: string) => DType, settings: QuantizeSettings): TensorPlan[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  return names.map((name): TensorPlan => {
    const spec = byName.get(name);
    const module = moduleOf(spec, name);
    if (module === null) return { kind: 'copy', name };
    const [N, K] = spec!.shape;
    if (!['F32', 'BF16', 'F16'].includes(dtypeOf(name))) return { kind: 'copy', name, reason: `${dtypeOf(name)} is not a float dtype` };
    const pattern = settings.keep.find((p) => keepMatches(p, module));
    if (pattern !== undefined) return { kind: 'copy', name, reason: `matches the keep pattern ${pattern}` };
    if (K % settings.groupSize !== 0) return { kind: 'copy', name, reason: `its ${K} inputs are not a multiple of group size ${settings.groupSize}` };
    return { kind: 'quantize', name, module, N, K };
  });
}

/**
 * The module paths a --keep pattern can keep: every 2-D Linear or embedding weight of `names`
 * (what planQuantization would otherwise quantize, whatever the group size).
 */
export function keepableModules(specs: readonly TensorSpec[], names: readonly string[]): string[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  return names.map((name) => moduleOf(byName.get(name), name)).filter((m): m is string => m !== null);
}

/** The patterns of `keep` that match none of `modules` (by module path or by tensor name). */
export function unmatchedKeepPatterns(keep: readonly string[], modules: readonly string[]): string[] {
  return keep.filter((p) => !modules.some((m) => keepMatches(p, m)));
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The stored value of `x` in `dtype` (what the file will hold), and its bits. */
function storeAs(dtype: 'F32' | 'BF16' | 'F16', x: number): { value: number; bits: number } {
  if (dtype === 'F32') { f32[0] = x; return { value: f32[0], bits: u32[0] }; }
  if (dtype === 'BF16') { const bits = f32ToBf16Bits(x); u32[0] = bits << 16; return { value: f32[0], bits }; }
  const bits = f32ToF16Bits(x);
  return { value: f16BitsToF32(bits), bits };
}

export interface QuantizedMatrix {
  /** [N, K·bits/32] */
  readonly codes: Uint32Array;
  /** [N, K/gs] in `dtype` (u16 bits for BF16/F16) */
  readonly scales: Float32Array | Uint16Array;
  readonly biases: Float32Array | Uint16Array;
}

/**
 * MLX's affine quantization of w [N, K] (f32 values) in groups of `gs` along K, with scales and
 * biases stored in `dtype`. Per group, as mlx.core.quantize: scale = max((max − min)/(2^bits − 1), 1e-7),
 * signed toward the edge (min or max) of larger magnitude; the edge is snapped so that 0 is on the
 * grid (q0 = round(edge/scale), scale = edge/q0, bias = edge), then code = clip(round((w − bias)/scale), 0, 2^bits − 1).
 * Codes are computed against the stored (rounded) scale and bias, so they are the nearest grid point
 * of what a reader dequantizes.
 */
export function quantizeMatrix(w: Float32Array, N: number, K: number, bits: 8 | 4, gs: number, dtype: 'F32' | 'BF16' | 'F16', name = 'weight'): QuantizedMatrix {
  const nBins = (1 << bits) - 1, perWord = 32 / bits, groups = K / gs;
  const codes = new Uint32Array(N * K / perWord);
  const scales = dtype === 'F32' ? new Float32Array(N * groups) : new Uint16Array(N * groups);
  const biases = dtype === 'F32' ? new Float32Array(N * groups) : new Uint16Array(N * groups);
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < groups; g++) {
      const o = n * K + g * gs;
      let lo = Infinity, hi = -Infinity;
      for (let i = 0; i < gs; i++) { const v = w[o + i]; if (v < lo) lo = v; if (v > hi) hi = v; }
      if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
        throw new PonderError('QUANT_TENSOR', `${name}: row ${n}, group ${g} holds a non-finite value`, { tensor: name, hint: 'a weight with Inf or NaN cannot be quantized; keep the tensor with --keep, or fix the checkpoint' });
      }
      const minEdge = Math.abs(lo) > Math.abs(hi);
      let scale = Math.max((hi - lo) / nBins, 1e-7);
      if (!minEdge) scale = -scale;
      const edge = minEdge ? lo : hi;
      const q0 = Math.round(edge / scale);
      if (q0 !== 0) scale = edge / q0;
      const bias = q0 === 0 ? 0 : edge;
      const s = storeAs(dtype, scale), b = storeAs(dtype, bias);
      scales[n * groups + g] = s.bits; biases[n * groups + g] = b.bits;
      if (dtype === 'F32') { (scales as Float32Array)[n * groups + g] = s.value; (biases as Float32Array)[n * groups + g] = b.value; }
      for (let i = 0; i < gs; i++) {
        const k = g * gs + i;
        const code = Math.min(nBins, Math.max(0, Math.round((w[o + i] - b.value) / s.value)));
        codes[(n * K + k) / perWord | 0] |= code << ((k % perWord) * bits);
      }
    }
  }
  return { codes, scales, biases };
}
