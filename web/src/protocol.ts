/** Messages between the page (main.ts) and its worker (worker.ts). */
import type { CaseResult, SuiteResult } from '../../src/conform/portable.js';

/** A bundled model served under /models/<name>/, or the files of a folder the user picked (path in the folder → bytes). */
export type ModelChoice = { kind: 'bundled'; name: string } | { kind: 'files'; label: string; files: Record<string, ArrayBuffer> };

export type ToWorker =
  | { type: 'conform' }
  /** load a model on a runtime with this many kernel threads (1 = no pool) */
  | { type: 'load'; model: ModelChoice; threads: number }
  | { type: 'generate'; request: GenerateRequest }
  /** stop the running generation after its current token (handled at once, not queued) */
  | { type: 'stop' };

/** A depth policy the loaded model can run, in the CLI spelling with {N} (steps) and {T} (threshold) slots. */
export interface PolicyChoice { template: string; label: string; threshold?: number }

export interface ModelInfo { label: string; family: string; defaultDepth: number; policies: PolicyChoice[]; kernels: string }

export interface GenerateRequest {
  prompt: string;
  /** CLI spelling of the depth policy, e.g. "exit(gate, 0.5)" */
  policy: string;
  maxNewTokens: number;
  seed: number;
  temperature: number;
}

/** One token as the heatmap draws it. */
export interface TokenEvent { index: number; id: number; text: string; steps: number; maxSteps: number; phase: 'prefill' | 'decode'; exitReason: string }

export type FromWorker =
  | { type: 'status'; text: string }
  | { type: 'case'; result: CaseResult }
  /** threadJobs: kernel calls the thread pool split so far (0 with one thread) */
  | { type: 'conform-done'; result: SuiteResult; threadJobs: number }
  | { type: 'model'; info: ModelInfo }
  | { type: 'token'; token: TokenEvent }
  | { type: 'generate-done'; prompt: TokenEvent[]; traceJson: string; summary: string; finishReason: string; threadJobs: number }
  | { type: 'error'; message: string };
