// The functions run against a stand-in for Excel's StreamingInvocation (Excel cannot run
// here): it records each setResult, and the test calls onCanceled as Excel would.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { streamGrid, streamValue, type GridFeedEvent, type StreamingInvocationLike } from "../src/core/grid-formulas.js";
import { GridState } from "../src/core/grid.js";
import type { Matrix } from "../src/core/matrix.js";
import { SubscriptionRegistry, type Emit } from "../src/core/registry.js";
import { int, row } from "./helpers.js";

class FakeInvocation<T> implements StreamingInvocationLike<T> {
  results: T[] = [];
  onCanceled?: () => void;
  setResult(value: T): void {
    this.results.push(value);
  }
  get last(): T | undefined {
    return this.results.at(-1);
  }
}

function setup() {
  const feeds: { emit: Emit<GridFeedEvent>; closed: boolean }[] = [];
  const registry = new SubscriptionRegistry<GridFeedEvent>((_app, _grid, emit) => {
    const feed = { emit, closed: false };
    feeds.push(feed);
    return { close: () => void (feed.closed = true) };
  });
  const state = new GridState("ordersapp", "product_sum");
  state.applySchema({ epoch: "e1", columns: [{ name: "units_sold" }] });
  state.applySnapshot({ seq: 1n, rows: [row("tea", int(2))], complete: true });
  return { registry, feeds, state };
}

describe("streamGrid", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => vi.useRealTimers());

  it("spills the grid, conflates updates to one result per interval, and closes on cancel", () => {
    const { registry, feeds, state } = setup();
    const inv = new FakeInvocation<Matrix>();
    streamGrid(registry, "ordersapp", "product_sum", undefined, undefined, inv);
    feeds[0]!.emit({ type: "data", state });
    expect(inv.last).toEqual([["key", "units_sold"], ["tea", 2]]);

    for (let i = 3; i < 50; i++) {
      state.applyDelta({ seq: BigInt(i), upserts: [row("tea", int(i))], deletes: [] });
      feeds[0]!.emit({ type: "data", state });
    }
    expect(inv.results).toHaveLength(1);
    vi.advanceTimersByTime(250);
    expect(inv.results).toHaveLength(2);
    expect(inv.last).toEqual([["key", "units_sold"], ["tea", 49]]);

    inv.onCanceled!();
    expect(feeds[0]!.closed).toBe(true);
    feeds[0]!.emit({ type: "data", state });
    vi.runAllTimers();
    expect(inv.results).toHaveLength(2);
  });

  it("two formulas share one stream; each has its own columns and interval", () => {
    const { registry, feeds, state } = setup();
    const a = new FakeInvocation<Matrix>();
    const b = new FakeInvocation<Matrix>();
    streamGrid(registry, "ordersapp", "product_sum", "units_sold", "interval=1000; header=false", a);
    feeds[0]!.emit({ type: "data", state });
    streamGrid(registry, "ordersapp", "product_sum", undefined, undefined, b);
    expect(feeds).toHaveLength(1);
    expect(a.last).toEqual([["tea", 2]]);
    expect(b.last).toEqual([["key", "units_sold"], ["tea", 2]]); // joined: latest data at once
    a.onCanceled!();
    expect(feeds[0]!.closed).toBe(false);
    b.onCanceled!();
    expect(feeds[0]!.closed).toBe(true);
  });

  it("marks the header stale when disconnected, and shows errors as text", () => {
    const { registry, feeds, state } = setup();
    const inv = new FakeInvocation<Matrix>();
    streamGrid(registry, "ordersapp", "product_sum", undefined, undefined, inv);
    feeds[0]!.emit({ type: "data", state });
    const refused = Object.assign(new Error("refused"), { code: 14, rawMessage: "refused" });
    feeds[0]!.emit({ type: "stale", state, error: refused });
    expect(inv.results).toHaveLength(2); // not held back by conflation
    expect(inv.last).toEqual([["key (stale: the endpoint is unreachable (refused); reconnecting)", "units_sold"], ["tea", 2]]);
    feeds[0]!.emit({ type: "error", error: Object.assign(new Error("x"), { code: 7, rawMessage: "" }) });
    expect(inv.last).toEqual([["AeroGrid: permission denied: your token does not give access to this"]]);
  });

  it("a bad argument is shown in the cell and opens no stream", () => {
    const { registry, feeds } = setup();
    const inv = new FakeInvocation<Matrix>();
    streamGrid(registry, "ordersapp", "product_sum", undefined, "sort=up", inv);
    expect(inv.last![0]![0]).toMatch(/^AeroGrid: unknown option "sort"/);
    expect(feeds).toHaveLength(0);
  });

  it("an unknown column is shown in the cell", () => {
    const { registry, feeds, state } = setup();
    const inv = new FakeInvocation<Matrix>();
    streamGrid(registry, "ordersapp", "product_sum", "price", undefined, inv);
    feeds[0]!.emit({ type: "data", state });
    expect(inv.last).toEqual([['AeroGrid: ordersapp.product_sum has no column "price"; its columns are: units_sold']]);
  });
});

describe("streamValue", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("streams one cell and says when the row or column is missing", () => {
    const { registry, feeds, state } = setup();
    const inv = new FakeInvocation<string | number | boolean>();
    streamValue(registry, "ordersapp", "product_sum", "tea", "units_sold", inv, 0);
    feeds[0]!.emit({ type: "data", state });
    expect(inv.last).toBe(2);
    state.applyDelta({ seq: 2n, upserts: [], deletes: ["tea"] });
    feeds[0]!.emit({ type: "data", state });
    expect(inv.last).toBe('AeroGrid: ordersapp.product_sum has no row "tea"');
    const other = new FakeInvocation<string | number | boolean>();
    streamValue(registry, "ordersapp", "product_sum", "tea", "nope", other, 0);
    expect(other.last).toMatch(/has no column "nope"/);
    inv.onCanceled!();
    other.onCanceled!();
    expect(feeds[0]!.closed).toBe(true);
  });
});
