// Kernel entry point: every exported kernel is re-exported from here (see asconfig.json).
// The module is built with --runtime stub and allocates nothing: all memory is handed out by the
// JS-side arena (src/runtime/wasm-arena.ts) above heap_base(), and one module instance per thread
// shares the imported memory.
export { add_f32, axpy_f32, scale_f32, sigmoid_f32, silu_f32, silu_mul_f32, rmsnorm_f32, rope_f32, softmax_f32, log_softmax_f32, argmax_f32, bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16 } from './elementwise';
export { linear_f32, linear_bf16 } from './linear';
export { linear_quant } from './linear-quant';
export { linear_quant_i16 } from './linear-quant-i16';
export { attention, attention_bf16, attention_f16, attention_decode, attention_decode_bf16, attention_decode_f16 } from './attention';
export { stream_read_f32, clock_chain } from './stream';

// First byte the arena may hand out (after the module's static data: Mathf's tables).
export function heap_base(): usize {
  return __heap_base;
}
