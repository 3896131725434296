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
