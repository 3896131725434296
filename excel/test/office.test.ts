// The Office.js layer registers its functions only when Excel's CustomFunctions exists.
import { afterEach, describe, expect, it, vi } from "vitest";

describe("excel-functions.ts registration", () => {
  afterEach(() => {
    delete (globalThis as { CustomFunctions?: unknown }).CustomFunctions;
    vi.resetModules();
  });

  it("imports in Node without Excel", async () => {
    const mod = await import("../src/excel-functions.js");
    expect(Object.keys(mod.FUNCTIONS)).toEqual(["GRID", "VALUE", "APPS"]);
    expect(mod.openStreams()).toBe(0);
  });

  it("associates GRID, VALUE and APPS with Excel's runtime", async () => {
    const associate = vi.fn();
    (globalThis as { CustomFunctions?: unknown }).CustomFunctions = { associate };
    vi.resetModules();
    const mod = await import("../src/excel-functions.js");
    expect(associate.mock.calls.map((c) => c[0])).toEqual(["GRID", "VALUE", "APPS"]);
    expect(associate.mock.calls[0]?.[1]).toBe(mod.grid);
  });

  it("configure moves open formulas to the new endpoint; the same endpoint again changes nothing", async () => {
    const mod = await import("../src/excel-functions.js");
    const asked: string[] = [];
    // A fetch that never answers (until aborted): enough to see where each stream goes.
    const fetch: typeof globalThis.fetch = (input, init) => {
      asked.push(new URL(String(input instanceof Request ? input.url : input)).origin);
      return new Promise((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    };
    mod.configure({ baseUrl: "http://a.test", fetch });
    const invocation: { setResult: (v: unknown) => void; onCanceled?: () => void } = { setResult: () => undefined };
    mod.grid("orders", "product_sum", null, null, invocation as never);
    await vi.waitFor(() => expect(asked).toEqual(["http://a.test"]));
    mod.configure({ baseUrl: "http://b.test", fetch });
    await vi.waitFor(() => expect(asked).toEqual(["http://a.test", "http://b.test"]));
    expect(mod.openStreams()).toBe(1);
    invocation.onCanceled?.();
    expect(mod.openStreams()).toBe(0);

    const first = mod.configure({ baseUrl: "http://c.test/", token: "t" });
    expect(mod.configure({ baseUrl: "http://c.test", token: " t " })).toBe(first);
    expect(mod.configure({ baseUrl: "http://c.test", token: "u" })).not.toBe(first);
  });

  it("configure moves an open =AEROGRID.APPS() to the new endpoint's catalog; Excel's cancel ends it", async () => {
    const mod = await import("../src/excel-functions.js");
    const watches: { origin: string; signal: AbortSignal }[] = [];
    const fetch: typeof globalThis.fetch = (input, init) => {
      const url = new URL(String(input instanceof Request ? input.url : input));
      if (url.pathname.endsWith("/WatchApps") && init?.signal) watches.push({ origin: url.origin, signal: init.signal });
      return new Promise((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
    };
    mod.configure({ baseUrl: "http://a.test", fetch });
    const invocation: { setResult: (v: unknown) => void; onCanceled?: () => void } = { setResult: () => undefined };
    mod.apps(invocation as never);
    await vi.waitFor(() => expect(watches.map((w) => w.origin)).toEqual(["http://a.test"]));
    mod.configure({ baseUrl: "http://b.test", fetch });
    await vi.waitFor(() => expect(watches.map((w) => w.origin)).toEqual(["http://a.test", "http://b.test"]));
    expect(watches[0]?.signal.aborted).toBe(true); // the old endpoint's watch is closed
    expect(watches[1]?.signal.aborted).toBe(false);
    invocation.onCanceled?.();
    expect(watches[1]?.signal.aborted).toBe(true);
    mod.configure({ baseUrl: "http://c.test", fetch }); // a cancelled formula is not restarted
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(watches).toHaveLength(2);
  });
});
