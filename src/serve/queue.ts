/**
 * One model runs one generation at a time: requests take turns in arrival order (FIFO). At most
 * `capacity` wait behind the running one; past that `enter` says no (the server answers 429 with
 * Retry-After). A waiting request whose signal aborts (its client went away, its time ran out)
 * leaves the line at once, and a running one frees its turn when it ends, however it ends.
 */
export type Release = () => void;

interface Waiter {
  start: (release: Release) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class TurnQueue {
  private running = false;
  private readonly waiting: Waiter[] = [];
  /** wall times (ms) of the last turns, for the Retry-After estimate */
  private readonly recent: number[] = [];

  /** @param capacity requests that may wait behind the running one */
  constructor(readonly capacity: number) {}

  get size(): { running: number; waiting: number } {
    return { running: this.running ? 1 : 0, waiting: this.waiting.length };
  }

  /**
   * A place in line: resolves with the function that ends the turn when it is this request's turn,
   * rejects with the signal's reason if the signal aborts first; null when the line is full.
   */
  enter(signal: AbortSignal): Promise<Release> | null {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!this.running) {
      this.running = true;
      return Promise.resolve(this.turn());
    }
    if (this.waiting.length >= this.capacity) return null;
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        start: resolve,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /**
   * Seconds a client turned away should wait: until the running turn ends and the line has a place
   * again, i.e. the mean of recent turns, in whole seconds, at least 1. (Waiting until the whole
   * line has drained would leave the model idle while every turned-away client sleeps.)
   */
  retryAfterSeconds(): number {
    const mean = this.recent.length > 0 ? this.recent.reduce((a, b) => a + b, 0) / this.recent.length : 1000;
    return Math.max(1, Math.ceil(mean / 1000));
  }

  private turn(): Release {
    const started = globalThis.performance.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.recent.push(globalThis.performance.now() - started);
      if (this.recent.length > 16) this.recent.shift();
      const next = this.waiting.shift();
      if (!next) { this.running = false; return; }
      next.signal.removeEventListener('abort', next.onAbort);
      next.start(this.turn());
    };
  }
}
