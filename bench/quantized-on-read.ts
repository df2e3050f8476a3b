/**
 * A synthetic checkpoint quantized as it is read (benchmarks only): the WeightSource a family
 * would get from `ponder quantize`'s output (MLX layout, src/models/quantized.ts), made from a
 * source of float weights without writing any file. Which tensors are quantized and how is
 * `ponder quantize`'s own plan and arithmetic (src/convert/quantize.ts).
 */
import { planQuantization, quantizeMatrix, type QuantizeSettings } from '../src/convert/quantize.js';
import { quantDType } from '../src/kernels/quant.js';
import { widenFloats, type FloatDType } from '../src/models/inputs.js';
import type { TensorSpec } from '../src/models/family.js';
import type { WeightSource } from '../src/models/weights.js';
import { bf16BitsToF32, f16BitsToF32 } from '../src/kernels/scalar.js';

export function quantizedOnRead(source: WeightSource, specs: readonly TensorSpec[], settings: QuantizeSettings): WeightSource {
  const plan = new Map(planQuantization(specs, source.names(), (n) => source.info(n)!.dtype, settings).map((p) => [p.name, p]));
  const widenBits = (dtype: string, bits: Uint16Array | Float32Array): Float32Array =>
    dtype === 'F32' ? bits as Float32Array : Float32Array.from(bits as Uint16Array, dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32);
  return {
    label: `${source.label}, quantized to ${settings.bits} bits on read`,
    names: () => source.names(),
    info: (name) => {
      const info = source.info(name), p = plan.get(name);
      return info && p?.kind === 'quantize' ? { ...info, quant: { bits: settings.bits, groupSize: settings.groupSize } } : info;
    },
    read: (name) => source.read(name),
    readQuantized: (name) => {
      const info = source.info(name)!, p = plan.get(name)!;
      if (p.kind !== 'quantize') throw new Error(`${name} is not quantized`);
      const w = new Float32Array(p.N * p.K);
      widenFloats(info.dtype as FloatDType, source.read(name), 0, w.length, w);
      const q = quantizeMatrix(w, p.N, p.K, settings.bits, settings.groupSize, info.dtype as 'F32' | 'BF16' | 'F16', name);
      return { dtype: quantDType(settings.bits), groupSize: settings.groupSize, codes: q.codes, scales: widenBits(info.dtype, q.scales), biases: widenBits(info.dtype, q.biases) };
    },
  };
}
