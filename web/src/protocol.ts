/** Messages between the page (main.ts) and its worker (worker.ts). */
import type { CaseResult, SuiteResult } from '../../test/portable/suite.js';

export type ToWorker =
  | { type: 'conform' }
  | { type: 'generate'; request: GenerateRequest };

export interface GenerateRequest {
  /** A bundled model served under /models/<name>/, or files the user picked (path relative to the folder → bytes). */
  model: { kind: 'bundled'; name: string } | { kind: 'files'; label: string; files: Record<string, ArrayBuffer> };
  prompt: string;
  /** CLI spelling of the depth policy, e.g. "default", "fixed(4)", "exit(kl)" */
  policy: string;
  /** threshold for exit/router policies; undefined = the policy's own */
  threshold?: number;
  maxNewTokens: number;
  seed: number;
  temperature: number;
}

/** One token as the heatmap draws it. */
export interface TokenEvent { index: number; id: number; text: string; steps: number; maxSteps: number; phase: 'prefill' | 'decode'; exitReason: string }

export type FromWorker =
  | { type: 'status'; text: string }
  | { type: 'case'; result: CaseResult }
  | { type: 'conform-done'; result: SuiteResult }
  | { type: 'token'; token: TokenEvent }
  | { type: 'generate-done'; tokens: TokenEvent[]; text: string; traceJson: string; summary: string }
  | { type: 'error'; message: string };
