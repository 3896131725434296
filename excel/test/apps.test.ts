// =AEROGRID.APPS over a fake WatchApps stream, with a stand-in for Excel's invocation.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { appsMatrix, streamApps, type AppInfoLike } from "../src/core/apps.js";
import type { Matrix } from "../src/core/matrix.js";
import { controllableWatch } from "./helpers.js";

const app = (name: string, status: number, grids: string[] = [], message = ""): AppInfoLike => ({
  name,
  tenant: "default",
  status,
  grids: grids.map((g) => ({ name: g })),
  message,
});

describe("appsMatrix", () => {
  it("lists apps by name with status text and grid names", () => {
    const apps = new Map([
      ["b", app("b", 5, [], "crashed")],
      ["a", app("a", 3, ["g1", "g2"])],
    ]);
    expect(appsMatrix(apps)).toEqual([
      ["name", "tenant", "status", "grids"],
      ["a", "default", "running", "g1, g2"],
      ["b", "default", "failed: crashed", ""],
    ]);
  });
});

describe("streamApps", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("follows the watch, marks a broken connection stale, and closes on cancel", async () => {
    const w = controllableWatch();
    const results: Matrix[] = [];
    const invocation: { setResult(m: Matrix): void; onCanceled?: () => void } = { setResult: (m) => results.push(m) };
    streamApps(invocation, { watch: w.watch, intervalMs: 0 });
    w.push({ initial: true, apps: [app("a", 1)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([
      ["name", "tenant", "status", "grids"],
      ["a", "default", "starting", ""],
    ]);
    w.push({ initial: false, apps: [app("b", 3, ["g"])], removed: ["a"] });
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)).toEqual([
      ["name", "tenant", "status", "grids"],
      ["b", "default", "running", "g"],
    ]);
    w.fail(new TypeError("fetch failed"));
    await vi.advanceTimersByTimeAsync(0);
    expect(String(results.at(-1)?.[0]?.[0])).toMatch(/^name \(stale: fetch failed; reconnecting\)$/);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(w.opened.length).toBe(2); // reconnected
    invocation.onCanceled?.();
    expect(w.opened.at(-1)?.aborted).toBe(true); // the live stream is closed
  });

  it("shows a final error as text", async () => {
    const w = controllableWatch();
    const results: Matrix[] = [];
    streamApps({ setResult: (m) => results.push(m) }, { watch: w.watch, intervalMs: 0 });
    w.fail({ code: 16, rawMessage: "bad token" });
    await vi.advanceTimersByTimeAsync(0);
    expect(results).toEqual([[["AeroGrid: not signed in, or the token has expired (bad token)"]]]);
  });
});

/** A ListGrids stand-in whose answers the test releases one by one. */
function controllableListGrids() {
  const calls: { app: string; signal: AbortSignal; resolve: (g: string[]) => void; reject: (e: unknown) => void }[] = [];
  const listGrids = (app: string, signal: AbortSignal) =>
    new Promise<readonly { name: string }[]>((resolve, reject) => {
      calls.push({ app, signal, resolve: (g) => resolve(g.map((name) => ({ name }))), reject });
    });
  return { listGrids, calls };
}

describe("grids looked up from the apps (a cluster's catalog lists none)", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("asks each running app without grids once, fills them in, and asks again after a change", async () => {
    const w = controllableWatch();
    const lg = controllableListGrids();
    const results: Matrix[] = [];
    const invocation: { setResult(m: Matrix): void; onCanceled?: () => void } = { setResult: (m) => results.push(m) };
    streamApps(invocation, { watch: w.watch, intervalMs: 0, listGrids: lg.listGrids });
    w.push({ initial: true, apps: [app("a", 3), app("b", 3, ["own"]), app("c", 1)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    // only the running app listed without grids is asked; b has its own, c is not running
    expect(lg.calls.map((c) => c.app)).toEqual(["a"]);
    expect(results.at(-1)?.[1]).toEqual(["a", "default", "running", ""]);
    lg.calls[0]?.resolve(["quotes", "trades"]);
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)?.[1]).toEqual(["a", "default", "running", "quotes, trades"]);
    expect(results.at(-1)?.[2]).toEqual(["b", "default", "running", "own"]);

    // the same AppInfo again: nothing asked; a changed one (redeployed): asked again
    w.push({ initial: false, apps: [app("a", 3)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lg.calls).toHaveLength(1);
    expect(results.at(-1)?.[1]).toEqual(["a", "default", "running", "quotes, trades"]);
    w.push({ initial: false, apps: [app("a", 1)], removed: [] });
    w.push({ initial: false, apps: [app("a", 3)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lg.calls).toHaveLength(2);
    lg.calls[1]?.reject(new Error("unavailable"));
    await vi.advanceTimersByTimeAsync(0);
    expect(results.at(-1)?.[1]).toEqual(["a", "default", "running", ""]); // failed: left empty

    // a removed app's lookup in flight is abandoned; cancel abandons the rest
    w.push({ initial: false, apps: [app("d", 3)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lg.calls.at(-1)?.app).toBe("d");
    w.push({ initial: false, apps: [], removed: ["d"] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lg.calls.at(-1)?.signal.aborted).toBe(true);
    w.push({ initial: false, apps: [app("e", 3)], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    invocation.onCanceled?.();
    expect(lg.calls.at(-1)?.app).toBe("e");
    expect(lg.calls.at(-1)?.signal.aborted).toBe(true);
    lg.calls.at(-1)?.resolve(["late"]);
    await vi.advanceTimersByTimeAsync(0);
    expect(results.flat(2)).not.toContain("late");
  });
});
