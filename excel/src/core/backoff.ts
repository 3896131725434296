// Reconnecting a stream: capped exponential backoff with jitter (so a restarted server is
// not hit by every Excel at once), reset once a connection delivers data, and a resume
// point (epoch, seq) so the server can answer with deltas instead of a full snapshot.
import { isRetryable } from "./errors.js";
import type { ResumePoint } from "./grid.js";

export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
  /** Fraction of each delay that is random: 0 = none, 1 = "full jitter". */
  jitter?: number;
  /** Injectable for tests; Math.random by default. */
  random?: () => number;
}

export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly jitter: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 250;
    this.maxMs = options.maxMs ?? 30_000;
    this.factor = options.factor ?? 2;
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
    this.random = options.random ?? Math.random;
  }

  /** The delay before the next attempt; each call without a reset grows it up to the cap. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt += 1;
    return Math.round(base * (1 - this.jitter * this.random()));
  }

  /** Number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}

export type ConnectionStatus =
  | { state: "connecting"; attempt: number }
  | { state: "connected" }
  | { state: "waiting"; attempt: number; delayMs: number; error: unknown }
  | { state: "failed"; error: unknown }
  | { state: "stopped" };

export interface Connection {
  /** Aborted when the reconnector stops; the stream must end then. */
  signal: AbortSignal;
  /** Where to resume from; undefined means "send a snapshot". */
  resume: ResumePoint | undefined;
  /** Call on each message received: it marks the connection healthy and resets the backoff. */
  received(): void;
}

export interface ReconnectorOptions {
  /** Runs one stream until it ends (resolve) or breaks (reject). */
  connect: (connection: Connection) => Promise<void>;
  /** The current resume point, read before each attempt (e.g. GridState.resumePoint). */
  resumePoint: () => ResumePoint | undefined;
  onStatus?: (status: ConnectionStatus) => void;
  backoff?: Backoff;
  /** Which errors end the loop (bad arguments, auth); by default errors.isRetryable. */
  isRetryable?: (error: unknown) => boolean;
}

/**
 * Keeps one logical stream alive: connect, and when the stream ends or fails, wait with
 * backoff and connect again with the latest resume point. A stream that ends cleanly is
 * reconnected too: grid streams never end on their own.
 */
export class Reconnector {
  private readonly backoff: Backoff;
  private readonly retryable: (error: unknown) => boolean;
  private controller: AbortController | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;
  private connectedNotified = false;

  constructor(private readonly options: ReconnectorOptions) {
    this.backoff = options.backoff ?? new Backoff();
    this.retryable = options.isRetryable ?? isRetryable;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.controller?.abort();
    this.controller = undefined;
    this.options.onStatus?.({ state: "stopped" });
  }

  get isRunning(): boolean {
    return this.running;
  }

  private attempt(): void {
    const controller = new AbortController();
    this.controller = controller;
    this.connectedNotified = false;
    this.options.onStatus?.({ state: "connecting", attempt: this.backoff.attempts });
    const connection: Connection = {
      signal: controller.signal,
      resume: this.options.resumePoint(),
      received: () => {
        if (controller.signal.aborted) return;
        this.backoff.reset();
        if (!this.connectedNotified) {
          this.connectedNotified = true;
          this.options.onStatus?.({ state: "connected" });
        }
      },
    };
    let run: Promise<void>;
    try {
      run = this.options.connect(connection);
    } catch (error) {
      run = Promise.reject(error);
    }
    run.then(
      () => this.ended(controller, new Error("the stream ended")),
      (error: unknown) => this.ended(controller, error),
    );
  }

  private ended(controller: AbortController, error: unknown): void {
    if (!this.running || controller !== this.controller || controller.signal.aborted) return;
    if (!this.retryable(error)) {
      this.running = false;
      this.controller = undefined;
      this.options.onStatus?.({ state: "failed", error });
      return;
    }
    const attempt = this.backoff.attempts + 1;
    const delayMs = this.backoff.next();
    this.options.onStatus?.({ state: "waiting", attempt, delayMs, error });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running) this.attempt();
    }, delayMs);
  }
}
