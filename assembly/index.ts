// Kernel entry point: every exported kernel is re-exported from here (see asconfig.json).
export { add_f32 } from './elementwise';
export { stream_read_f32 } from './stream';
