import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Backoff, Reconnector, type Connection, type ConnectionStatus } from "../src/core/backoff.js";
import { ArgumentError } from "../src/core/errors.js";
import { GridState } from "../src/core/grid.js";
import { int, row } from "./helpers.js";

describe("Backoff", () => {
  it("grows exponentially up to the cap, and resets", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it("jitter takes a random share off each delay", () => {
    const randoms = [0, 1, 0.5];
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5, random: () => randoms.shift()! });
    expect([b.next(), b.next(), b.next()]).toEqual([100, 100, 300]);
  });

  it("the default sequence stays within its bounds", () => {
    const b = new Backoff();
    for (let i = 0; i < 20; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(Math.min(30_000, 250 * 2 ** i) / 2);
      expect(d).toBeLessThanOrEqual(30_000);
    }
  });
});

/** A connect function whose streams the test ends by hand. */
function scripted() {
  const calls: { connection: Connection; resolve: () => void; reject: (e: unknown) => void }[] = [];
  const connect = (connection: Connection) =>
    new Promise<void>((resolve, reject) => calls.push({ connection, resolve, reject }));
  return { calls, connect };
}

const unavailable = Object.assign(new Error("connection refused"), { code: 14, rawMessage: "connection refused" });

describe("Reconnector", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("retries with backoff, resets it on data, and resumes from the last epoch/seq", async () => {
    const grid = new GridState("app", "g");
    const { calls, connect } = scripted();
    const statuses: ConnectionStatus["state"][] = [];
    const r = new Reconnector({
      connect,
      resumePoint: () => grid.resumePoint(),
      backoff: new Backoff({ initialMs: 100, maxMs: 400, jitter: 0 }),
      onStatus: (s) => statuses.push(s.state),
    });
    r.start();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.connection.resume).toBeUndefined(); // nothing yet: ask for a snapshot

    // Two failures before any data: 100 ms, then 200 ms.
    calls[0]!.reject(unavailable);
    await vi.advanceTimersByTimeAsync(99);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    calls[1]!.reject(unavailable);
    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(3);

    // The third connection gets a snapshot and a delta, then the server goes away.
    const c = calls[2]!;
    grid.applySchema({ epoch: "e1", columns: [{ name: "n" }] });
    grid.applySnapshot({ seq: 10n, rows: [row("k", int(1))], complete: true });
    c.connection.received();
    grid.applyDelta({ seq: 11n, upserts: [row("k", int(2))], deletes: [] });
    c.connection.received();
    c.reject(unavailable);
    await vi.advanceTimersByTimeAsync(100); // backoff was reset by the data: 100 ms again
    expect(calls).toHaveLength(4);
    expect(calls[3]!.connection.resume).toEqual({ epoch: "e1", seq: 11n });

    // A stream that ends cleanly, having delivered nothing, is reconnected with the next delay.
    calls[3]!.resolve();
    await vi.advanceTimersByTimeAsync(199);
    expect(calls).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(5);

    expect(statuses).toEqual([
      "connecting", "waiting", "connecting", "waiting", "connecting", "connected",
      "waiting", "connecting", "waiting", "connecting",
    ]);
    r.stop();
    expect(calls[4]!.connection.signal.aborted).toBe(true);
  });

  it("caps the delay", async () => {
    const { calls, connect } = scripted();
    const delays: number[] = [];
    const r = new Reconnector({
      connect,
      resumePoint: () => undefined,
      backoff: new Backoff({ initialMs: 100, maxMs: 300, jitter: 0 }),
      onStatus: (s) => void (s.state === "waiting" && delays.push(s.delayMs)),
    });
    r.start();
    for (let i = 0; i < 5; i++) {
      calls[i]!.reject(unavailable);
      await vi.advanceTimersByTimeAsync(300);
    }
    expect(delays).toEqual([100, 200, 300, 300, 300]);
    r.stop();
  });

  it("stops for good on an error retrying cannot fix", async () => {
    const { calls, connect } = scripted();
    const statuses: ConnectionStatus[] = [];
    const r = new Reconnector({ connect, resumePoint: () => undefined, onStatus: (s) => statuses.push(s) });
    r.start();
    calls[0]!.reject(new ArgumentError("no grid"));
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(1);
    expect(statuses.at(-1)).toMatchObject({ state: "failed" });
    expect(r.isRunning).toBe(false);
    const denied = Object.assign(new Error("denied"), { code: 7, rawMessage: "denied" });
    const r2 = new Reconnector({ connect, resumePoint: () => undefined });
    r2.start();
    calls[1]!.reject(denied);
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(2);
  });

  it("stop during a wait cancels the retry; a stopped stream's late failure is ignored", async () => {
    const { calls, connect } = scripted();
    const r = new Reconnector({ connect, resumePoint: () => undefined });
    r.start();
    calls[0]!.reject(unavailable);
    await vi.advanceTimersByTimeAsync(0);
    r.stop();
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);

    const r2 = new Reconnector({ connect, resumePoint: () => undefined });
    r2.start();
    r2.stop();
    calls[1]!.reject(unavailable);
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(2);
  });

  it("a connect that throws synchronously is retried like a failed stream", async () => {
    let n = 0;
    const r = new Reconnector({
      connect: () => {
        n += 1;
        throw new TypeError("fetch failed");
      },
      resumePoint: () => undefined,
      backoff: new Backoff({ initialMs: 100, jitter: 0 }),
    });
    r.start();
    await vi.advanceTimersByTimeAsync(100);
    expect(n).toBe(2);
    r.stop();
  });
});
