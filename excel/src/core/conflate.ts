// Per-subscriber conflation: Excel re-renders a spilled grid on every setResult, so a
// busy grid must reach a cell at most once per interval, always with its latest value.

export const DEFAULT_INTERVAL_MS = 250;

export interface ConflatorOptions {
  intervalMs?: number;
  /** Injectable clock; Date.now by default (fake timers replace it in tests). */
  now?: () => number;
}

/**
 * Emits pushed values at most once per `intervalMs`, latest wins. The first value after a
 * quiet interval goes out at once (no added latency when idle); values pushed within the
 * interval wait for its end and only the last one is emitted.
 */
export class Conflator<T> {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastEmit = Number.NEGATIVE_INFINITY;
  private pending: { value: T } | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    private readonly emit: (value: T) => void,
    options: ConflatorOptions = {},
  ) {
    const interval = options.intervalMs ?? DEFAULT_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval < 0) {
      throw new RangeError(`interval must be a non-negative number of ms, got ${interval}`);
    }
    this.intervalMs = interval;
    this.now = options.now ?? Date.now;
  }

  push(value: T): void {
    if (this.closed) return;
    this.pending = { value };
    if (this.timer !== undefined) return; // the scheduled emission will carry it
    const wait = this.lastEmit + this.intervalMs - this.now();
    if (wait <= 0) {
      this.emitPending();
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.emitPending();
      }, wait);
    }
  }

  /** Emits the pending value now (an error or a stale mark should not wait). */
  flush(): void {
    if (this.closed) return;
    this.clearTimer();
    this.emitPending();
  }

  /** Whether a value is waiting for the end of the interval. */
  get hasPending(): boolean {
    return this.pending !== undefined;
  }

  /** Drops any pending value; later pushes are ignored. */
  close(): void {
    this.closed = true;
    this.pending = undefined;
    this.clearTimer();
  }

  private emitPending(): void {
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    this.lastEmit = this.now();
    this.emit(pending.value);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}
