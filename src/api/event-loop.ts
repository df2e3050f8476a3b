/** Timing and turn-giving shared by the long-running API calls (generate, score). */

/** Milliseconds from the host's monotonic clock (every JS runtime ponder runs on has `performance`). */
export function now(): number {
  return globalThis.performance.now();
}

/** Gives timers and abort handlers a turn between tokens or windows (called only when there is a signal to watch). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
