// The task pane's app list: a reconnecting WatchApps stream, with fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AppInfoLike } from "../src/core/apps.js";
import { Backoff, type ConnectionStatus } from "../src/core/backoff.js";
import { watchCatalog } from "../src/taskpane/catalog.js";
import { controllableWatch } from "./helpers.js";

const app = (name: string, grids: string[] = [], tenant = "t1"): AppInfoLike => ({
  name,
  tenant,
  status: 3,
  grids: grids.map((g) => ({ name: g })),
  message: "",
});

describe("watchCatalog", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("lists the apps by name, follows changes and reconnects after a failure", async () => {
    const stream = controllableWatch();
    const lists: string[][] = [];
    const statuses: ConnectionStatus["state"][] = [];
    const tenants = new Map<string, string>();
    const watch = watchCatalog({
      watch: stream.watch,
      onApps: (apps) => lists.push(apps.map((a) => a.name)),
      onStatus: (s) => statuses.push(s.state),
      onApp: (a) => tenants.set(a.name, a.tenant),
      backoff: new Backoff({ initialMs: 100, jitter: 0 }),
    });
    stream.push({ initial: true, apps: [app("b", ["g"]), app("a")], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lists.at(-1)).toEqual(["a", "b"]);
    expect(tenants.get("b")).toBe("t1");
    stream.push({ initial: false, apps: [app("c")], removed: ["a"] });
    await vi.advanceTimersByTimeAsync(0);
    expect(lists.at(-1)).toEqual(["b", "c"]);

    stream.fail(Object.assign(new Error("down"), { code: 14, rawMessage: "down" }));
    await vi.advanceTimersByTimeAsync(0);
    expect(statuses.at(-1)).toBe("waiting");
    expect(stream.opened).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100); // the backoff's first delay
    expect(stream.opened).toHaveLength(2);
    stream.push({ initial: true, apps: [app("c")], removed: [] }); // a fresh full list
    await vi.advanceTimersByTimeAsync(0);
    expect(lists.at(-1)).toEqual(["c"]);
    expect(statuses).toEqual(["connecting", "connected", "waiting", "connecting", "connected"]);

    watch.stop();
    expect(stream.opened[1]?.aborted).toBe(true);
    expect(statuses.at(-1)).toBe("stopped");
  });
});

describe("watchCatalog with grid lookups", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("lists the grids a running app reports itself when the catalog has none", async () => {
    const stream = controllableWatch();
    const lists: AppInfoLike[][] = [];
    const asked: string[] = [];
    const watch = watchCatalog({
      watch: stream.watch,
      onApps: (apps) => lists.push([...apps]),
      onStatus: () => undefined,
      listGrids: async (name) => {
        asked.push(name);
        return [{ name: "product_sum" }];
      },
      backoff: new Backoff({ initialMs: 100, jitter: 0 }),
    });
    stream.push({ initial: true, apps: [app("orders")], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(asked).toEqual(["orders"]);
    expect(lists.at(-1)?.[0]?.grids).toEqual([{ name: "product_sum" }]);
    watch.stop();
  });
});
