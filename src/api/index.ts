/** The product surface: loadModel → Model.forward / Model.generate, depth policies. */
export { loadModel, type LoadOptions, type LoadProgress, type MemoryModelSource, type ModelSource } from './load.js';
export { Model, ChatSession, renderChatPrompt, Generation, type ForwardOptions, type ForwardResult, type GenerateOptions, type GenerationResult, type TokenEvent, type FinishReason, type ChatOptions, type ChatSessionOptions, type StopId } from './model.js';
export { Scoring, type ScoreOptions, type ScoreChunk, type ScoreSummary, type ScoreProgress } from './score.js';
export {
  defaultDepth, fixed, router, exit, budget, depthFunction, checkPolicy, describePolicy, parsePolicy,
  type DepthPolicy, type DepthFunction, type DepthDecision, type StepSummary,
} from '../depth/policy.js';
export { detectFamily, SUPPORTED_MODEL_TYPES } from '../models/registry.js';
export type { Family } from '../models/family.js';
