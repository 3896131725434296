// The Office.js layer registers its functions only when Excel's CustomFunctions exists.
import { afterEach, describe, expect, it, vi } from "vitest";

describe("functions.ts registration", () => {
  afterEach(() => {
    delete (globalThis as { CustomFunctions?: unknown }).CustomFunctions;
    vi.resetModules();
  });

  it("imports in Node without Excel", async () => {
    const mod = await import("../src/functions.js");
    expect(Object.keys(mod.FUNCTIONS)).toEqual(["GRID", "VALUE", "APPS"]);
    expect(mod.openStreams()).toBe(0);
  });

  it("associates GRID, VALUE and APPS with Excel's runtime", async () => {
    const associate = vi.fn();
    (globalThis as { CustomFunctions?: unknown }).CustomFunctions = { associate };
    vi.resetModules();
    const mod = await import("../src/functions.js");
    expect(associate.mock.calls.map((c) => c[0])).toEqual(["GRID", "VALUE", "APPS"]);
    expect(associate.mock.calls[0]?.[1]).toBe(mod.grid);
  });
});
