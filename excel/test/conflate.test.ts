import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Conflator, DEFAULT_INTERVAL_MS } from "../src/core/conflate.js";

describe("Conflator", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => vi.useRealTimers());

  it("emits the first value at once, then at most once per interval, latest wins", () => {
    const out: number[] = [];
    const c = new Conflator<number>((v) => out.push(v));
    c.push(1);
    expect(out).toEqual([1]);
    c.push(2);
    c.push(3);
    vi.advanceTimersByTime(DEFAULT_INTERVAL_MS - 1);
    expect(out).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(out).toEqual([1, 3]);
    expect(DEFAULT_INTERVAL_MS).toBe(250);
  });

  it("never emits twice within one interval under a steady stream", () => {
    const times: number[] = [];
    const c = new Conflator<number>(() => times.push(Date.now()), { intervalMs: 100 });
    for (let t = 0; t < 1000; t += 7) {
      c.push(t);
      vi.advanceTimersByTime(7);
    }
    vi.runAllTimers();
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(100);
    expect(times.length).toBeGreaterThanOrEqual(10);
    expect(times.length).toBeLessThanOrEqual(11);
  });

  it("emits immediately after a quiet interval", () => {
    const out: number[] = [];
    const c = new Conflator<number>((v) => out.push(v), { intervalMs: 100 });
    c.push(1);
    vi.advanceTimersByTime(500);
    c.push(2);
    expect(out).toEqual([1, 2]);
  });

  it("flush emits the pending value now and restarts the interval", () => {
    const out: number[] = [];
    const c = new Conflator<number>((v) => out.push(v), { intervalMs: 100 });
    c.push(1);
    c.push(2);
    expect(c.hasPending).toBe(true);
    vi.advanceTimersByTime(10);
    c.flush();
    expect(out).toEqual([1, 2]);
    expect(c.hasPending).toBe(false);
    c.flush(); // nothing pending: nothing emitted
    expect(out).toEqual([1, 2]);
    c.push(3);
    vi.advanceTimersByTime(99);
    expect(out).toEqual([1, 2]);
    vi.advanceTimersByTime(1);
    expect(out).toEqual([1, 2, 3]);
  });

  it("close drops the pending value and ignores later pushes", () => {
    const out: number[] = [];
    const c = new Conflator<number>((v) => out.push(v), { intervalMs: 100 });
    c.push(1);
    c.push(2);
    c.close();
    vi.runAllTimers();
    c.push(3);
    c.flush();
    expect(out).toEqual([1]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("interval 0 emits every value", () => {
    const out: number[] = [];
    const c = new Conflator<number>((v) => out.push(v), { intervalMs: 0 });
    c.push(1);
    c.push(2);
    expect(out).toEqual([1, 2]);
  });

  it("rejects a negative interval", () => {
    expect(() => new Conflator(() => {}, { intervalMs: -1 })).toThrow(RangeError);
  });
});
