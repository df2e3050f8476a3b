/**
 * ponder's public entry (ESM, no Node APIs): load a recursive language model, generate with a
 * depth policy, read the per-token depth trace. Node adds model directories: `ponder/node`.
 */
export * from './api/index.js';
export { PonderError, isPonderError, type PonderErrorDetails } from './errors.js';

// runtimes and kernels
export { createScalarRuntime, type Runtime } from './runtime/runtime.js';
export { createWasmRuntime, type WasmRuntime, type WasmRuntimeOptions } from './kernels/wasm.js';
export type { Kernels } from './kernels/kernels.js';

// formats and config readers
export { parseSafetensors, parseSafetensorsHeader, writeSafetensors, type SafetensorsFile, type SafetensorsHeader, type TensorInfo, type DType } from './format/safetensors.js';
export { parseConfigJson, configObject, type ConfigObject } from './format/config.js';
export { safetensorsWeights, type WeightSource, type WeightInfo } from './models/weights.js';
export { openPytorchCheckpoint, type PytorchCheckpoint, type PytorchTensorInfo } from './format/pytorch.js';
export { bytesSource, type ByteSource } from './format/zip.js';
export { morConfigFromRelease, parseExperimentYaml, planMorConversion, type ConversionSource, type MorConversion } from './convert/mor.js';

// sampling, stopping, tokenizer
export { Sampler, resolveSamplingOptions, samplingFromGenerationConfig, type SamplingOptions, type ResolvedSamplingOptions } from './generate/sampling.js';
export { StopCondition, type StopOptions } from './generate/stop.js';
export { loadTokenizer, type TextTokenizer, type LoadTokenizerOptions, type SpecialTokenRule } from './tokenizer.js';
export { loadChatTemplate, compileChatTemplate, specialTokenVariables, ChatTemplate, type ChatMessage, type ChatRenderOptions, type ChatTemplateFiles, type ChatTemplateOrigin, type LoadChatTemplateOptions } from './chat/template.js';
export { assistantRole, endOfTurnToken, defaultStopIds } from './chat/stops.js';
export { ThinkingSplitter, promptOpensThinking, type TextSegment } from './chat/thinking.js';

// the HTTP server core (spec/serve.md): serve it with Deno.serve, Bun.serve, or listen() from ponder/node
export { createServer, type PonderServer, type ServeOptions, type ServerState } from './serve/server.js';

// quality per depth of one checkpoint against another (e.g. quantized against its source)
export { compareModels, defaultComparePolicies, windowsOf, formatCompareTable, type CompareOptions, type CompareReport, type CompareRow } from './compare/quality.js';

// traces
export { checkTrace, summarizeTrace, traceToJSON, parseTraceJSON, type RunTrace, type TokenTrace, type TraceSummary, type DepthStats, type ExitReason } from './trace/trace.js';
export { renderTraceHtml, type TraceHtmlOptions } from './trace/html.js';
export { colorTokenByDepth, depthLegend, formatSummary } from './trace/terminal.js';
