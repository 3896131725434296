import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Backoff } from "../src/core/backoff.js";
import { gridFeedOpener, type SubscribeArgs, type SubscribeEvent } from "../src/core/feed.js";
import { streamGrid, type GridFeedEvent } from "../src/core/grid-formulas.js";
import { buildMatrix, type Matrix } from "../src/core/matrix.js";
import { SubscriptionRegistry } from "../src/core/registry.js";
import { SubscribeResponseSchema, type SubscribeResponse } from "../src/gen/aerogrid/v1/grid_pb.js";
import { int, row } from "./helpers.js";

/** A server stream the test drives: push messages, then end or fail it. */
class Stream implements AsyncIterable<SubscribeEvent> {
  private queue: SubscribeEvent[] = [];
  private wake: (() => void) | undefined;
  private end: { error?: unknown } | undefined;
  constructor(
    readonly args: SubscribeArgs,
    readonly signal: AbortSignal,
  ) {
    signal.addEventListener("abort", () => this.fail(new Error("aborted")));
  }
  push(...events: SubscribeEvent[]): void {
    this.queue.push(...events);
    this.wake?.();
  }
  fail(error: unknown): void {
    this.end = { error };
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<SubscribeEvent> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.end) {
        if (this.end.error !== undefined) throw this.end.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

const schema = (epoch: string): SubscribeEvent => ({
  event: { case: "schema", value: { epoch, columns: [{ name: "units_sold" }] } },
});
const snapshot = (seq: bigint, ...rows: ReturnType<typeof row>[]): SubscribeEvent => ({
  event: { case: "snapshot", value: { seq, rows, complete: true } },
});
const delta = (seq: bigint, ...upserts: ReturnType<typeof row>[]): SubscribeEvent => ({
  event: { case: "delta", value: { seq, upserts, deletes: [] } },
});
const heartbeat = (seq: bigint, reason?: string): SubscribeEvent => ({
  event: { case: "heartbeat", value: { seq, stale: reason === undefined ? undefined : { reason } } },
});
const unavailable = Object.assign(new Error("connection refused"), { code: 14, rawMessage: "connection refused" });

function setup() {
  const streams: Stream[] = [];
  const registry = new SubscriptionRegistry<GridFeedEvent>(
    gridFeedOpener({
      subscribe: (args, signal) => {
        const s = new Stream(args, signal);
        streams.push(s);
        return s;
      },
      backoff: () => new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 }),
    }),
  );
  return { registry, streams };
}

describe("grid feed", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => vi.useRealTimers());

  it("streams a grid into a formula, goes stale on a break, and resumes from (epoch, seq)", async () => {
    const { registry, streams } = setup();
    const results: Matrix[] = [];
    const invocation = { setResult: (m: Matrix) => void results.push(m), onCanceled: undefined as (() => void) | undefined };
    streamGrid(registry, "ordersapp", "product_sum", undefined, "interval=0", invocation);
    expect(streams).toHaveLength(1);
    expect(streams[0]!.args).toEqual({ app: "ordersapp", grid: "product_sum", resumeEpoch: "", resumeSeq: 0n });

    streams[0]!.push(schema("e1"), snapshot(4n, row("tea", int(2))), delta(5n, row("apple", int(1))));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key", "units_sold"], ["apple", 1], ["tea", 2]]);

    streams[0]!.fail(unavailable);
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)![0]![0]).toBe("key (stale: the endpoint is unreachable (connection refused); reconnecting)");
    expect(results.at(-1)!.slice(1)).toEqual([["apple", 1], ["tea", 2]]); // last values kept

    await vi.advanceTimersByTimeAsync(100);
    expect(streams).toHaveLength(2);
    expect(streams[1]!.args).toMatchObject({ resumeEpoch: "e1", resumeSeq: 5n });
    // The server resumes with the schema only (no change since): the stale mark goes away.
    streams[1]!.push(schema("e1"));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key", "units_sold"], ["apple", 1], ["tea", 2]]);

    invocation.onCanceled!();
    expect(streams[1]!.signal.aborted).toBe(true);
    await vi.runAllTimersAsync();
    expect(streams).toHaveLength(2); // closed for good: no reconnect
  });

  it("marks the header stale while the app says it is degraded, keeping and updating the values", async () => {
    const { registry, streams } = setup();
    const results: Matrix[] = [];
    const invocation = { setResult: (m: Matrix) => void results.push(m), onCanceled: undefined as (() => void) | undefined };
    streamGrid(registry, "ordersapp", "product_sum", undefined, "interval=0", invocation);
    streams[0]!.push(schema("e1"), snapshot(4n, row("tea", int(2))), heartbeat(4n));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key", "units_sold"], ["tea", 2]]);
    const shown = results.length;
    streams[0]!.push(heartbeat(4n, "broker unreachable since 10:42"));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.length).toBe(shown + 1); // told at once, not at the next change
    expect(results.at(-1)).toEqual([["key (stale: broker unreachable since 10:42)", "units_sold"], ["tea", 2]]);
    // Repeated on every heartbeat while it lasts: nothing new to show.
    streams[0]!.push(heartbeat(4n, "broker unreachable since 10:42"));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.length).toBe(shown + 1);
    // Changes still arrive (the app serves its last committed state): shown, still marked.
    streams[0]!.push(delta(5n, row("tea", int(3))));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key (stale: broker unreachable since 10:42)", "units_sold"], ["tea", 3]]);
    streams[0]!.push(heartbeat(5n));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key", "units_sold"], ["tea", 3]]);
    invocation.onCanceled!();
  });

  it("learns that the app is degraded from the schema, on joining or resuming", async () => {
    const { registry, streams } = setup();
    const results: Matrix[] = [];
    const invocation = { setResult: (m: Matrix) => void results.push(m), onCanceled: undefined as (() => void) | undefined };
    streamGrid(registry, "ordersapp", "product_sum", undefined, "interval=0", invocation);
    const degraded = (epoch: string): SubscribeEvent => ({
      event: { case: "schema", value: { epoch, columns: [{ name: "units_sold" }], stale: { reason: "broker down" } } },
    });
    streams[0]!.push(degraded("e1"), snapshot(4n, row("tea", int(2))));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key (stale: broker down)", "units_sold"], ["tea", 2]]); // from the first render
    streams[0]!.fail(unavailable);
    await vi.advanceTimersByTimeAsync(100);
    // Resumed on a server that is healthy now: the schema alone clears the mark.
    streams[1]!.push(schema("e1"));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([["key", "units_sold"], ["tea", 2]]);
    invocation.onCanceled!();
  });

  it("a restarted server (new epoch) replaces the grid with its fresh snapshot", async () => {
    const { registry, streams } = setup();
    const events: GridFeedEvent[] = [];
    registry.subscribe("a", "g", (e) => events.push(e));
    streams[0]!.push(schema("e1"), snapshot(9n, row("old", int(1))));
    await vi.advanceTimersByTimeAsync(0);
    streams[0]!.fail(unavailable);
    await vi.advanceTimersByTimeAsync(100);
    streams[1]!.push(schema("e2"));
    await vi.advanceTimersByTimeAsync(0);
    expect(events.map((e) => e.type)).toEqual(["data", "stale"]); // nothing shown until the snapshot
    streams[1]!.push(snapshot(1n, row("new", int(2))));
    await vi.advanceTimersByTimeAsync(0);
    const last = events.at(-1)!;
    expect(last.type).toBe("data");
    if (last.type !== "data") throw new Error("unreachable");
    expect(buildMatrix(last.state).matrix).toEqual([["key", "units_sold"], ["new", 2]]);
    expect(last.state.resumePoint()).toEqual({ epoch: "e2", seq: 1n });
    registry.closeAll();
  });

  it("a refusal (permission denied) ends the feed with an error in the cell", async () => {
    const { registry, streams } = setup();
    const events: GridFeedEvent[] = [];
    registry.subscribe("a", "g", (e) => events.push(e));
    streams[0]!.fail(Object.assign(new Error("denied"), { code: 7, rawMessage: "denied" }));
    await vi.runAllTimersAsync();
    expect(events.map((e) => e.type)).toEqual(["error"]);
    expect(streams).toHaveLength(1);
    registry.closeAll();
  });

  it("accepts the generated SubscribeResponse messages", () => {
    const messages: SubscribeResponse[] = [
      create(SubscribeResponseSchema, { event: { case: "heartbeat", value: { seq: 3n } } }),
      create(SubscribeResponseSchema, { event: { case: "heartbeat", value: { seq: 3n, stale: { reason: "down" } } } }),
    ];
    const asEvents: SubscribeEvent[] = messages; // compile-time check of the structural types
    expect(asEvents).toHaveLength(2);
  });
});
