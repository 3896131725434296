import { describe, expect, it, vi } from "vitest";
import { SubscriptionRegistry, type Emit } from "../src/core/registry.js";

function fakeFeeds() {
  const feeds: { app: string; grid: string; emit: Emit<string>; closed: boolean }[] = [];
  const registry = new SubscriptionRegistry<string>((app, grid, emit) => {
    const feed = { app, grid, emit, closed: false };
    feeds.push(feed);
    return { close: () => void (feed.closed = true) };
  });
  return { registry, feeds };
}

describe("SubscriptionRegistry", () => {
  it("shares one feed per app/grid and counts references", () => {
    const { registry, feeds } = fakeFeeds();
    const a = vi.fn();
    const b = vi.fn();
    const s1 = registry.subscribe("app", "g", a);
    const s2 = registry.subscribe("app", "g", b);
    const s3 = registry.subscribe("app", "other", vi.fn());
    expect(feeds.map((f) => f.grid)).toEqual(["g", "other"]);
    expect(registry.refCount("app", "g")).toBe(2);
    expect(registry.size).toBe(2);

    feeds[0]!.emit("v1");
    expect(a).toHaveBeenCalledWith("v1");
    expect(b).toHaveBeenCalledWith("v1");

    s1.cancel();
    expect(feeds[0]!.closed).toBe(false);
    expect(registry.refCount("app", "g")).toBe(1);
    s1.cancel(); // idempotent: does not take b's reference
    expect(registry.refCount("app", "g")).toBe(1);
    feeds[0]!.emit("v2");
    expect(a).toHaveBeenCalledTimes(1);
    expect(b).toHaveBeenLastCalledWith("v2");

    s2.cancel();
    expect(feeds[0]!.closed).toBe(true);
    expect(registry.refCount("app", "g")).toBe(0);
    feeds[0]!.emit("late"); // a closing feed's last events go nowhere
    expect(b).toHaveBeenCalledTimes(2);
    s3.cancel();
    expect(registry.size).toBe(0);
  });

  it("gives a joining formula the feed's latest event at once", () => {
    const { registry, feeds } = fakeFeeds();
    registry.subscribe("app", "g", vi.fn());
    feeds[0]!.emit("snapshot");
    const late = vi.fn();
    registry.subscribe("app", "g", late);
    expect(late).toHaveBeenCalledWith("snapshot");
  });

  it("opens a fresh feed after the last cancel", () => {
    const { registry, feeds } = fakeFeeds();
    registry.subscribe("app", "g", vi.fn()).cancel();
    const again = vi.fn();
    registry.subscribe("app", "g", again);
    expect(feeds).toHaveLength(2);
    expect(feeds[1]!.closed).toBe(false);
    expect(again).not.toHaveBeenCalled(); // no stale replay from the closed feed
  });

  it("the same listener subscribed twice holds two references", () => {
    const { registry, feeds } = fakeFeeds();
    const l = vi.fn();
    const s1 = registry.subscribe("app", "g", l);
    registry.subscribe("app", "g", l);
    s1.cancel();
    expect(feeds[0]!.closed).toBe(false);
    feeds[0]!.emit("x");
    expect(l).toHaveBeenCalledTimes(1);
  });

  it("closes a feed that was shut down during its own synchronous first emit", () => {
    let closed = 0;
    const registry: SubscriptionRegistry<string> = new SubscriptionRegistry<string>((_app, _grid, emit) => {
      emit("sync");
      return { close: () => void closed++ };
    });
    registry.subscribe("app", "g", () => registry.closeAll());
    expect(closed).toBe(1);
    expect(registry.size).toBe(0);
  });

  it("closeAll closes every feed", () => {
    const { registry, feeds } = fakeFeeds();
    registry.subscribe("a", "g1", vi.fn());
    registry.subscribe("a", "g2", vi.fn());
    registry.closeAll();
    expect(feeds.every((f) => f.closed)).toBe(true);
    expect(registry.size).toBe(0);
  });

  it("reopen moves every subscription to a new feed; the old one closes and goes quiet", () => {
    const { registry, feeds } = fakeFeeds();
    const a = vi.fn();
    const sa = registry.subscribe("app", "g", a);
    feeds[0]!.emit("old");
    const next: { grid: string; emit: Emit<string>; closed: boolean }[] = [];
    registry.reopen((_app, grid, emit) => {
      const feed = { grid, emit, closed: false };
      next.push(feed);
      return { close: () => void (feed.closed = true) };
    });
    expect(feeds[0]!.closed).toBe(true);
    expect(next.map((f) => f.grid)).toEqual(["g"]);
    feeds[0]!.emit("late");
    expect(a).not.toHaveBeenCalledWith("late");
    next[0]!.emit("new");
    expect(a).toHaveBeenLastCalledWith("new");

    const b = vi.fn();
    const sb = registry.subscribe("app", "g", b); // joins the new feed, with its latest event
    expect(b).toHaveBeenCalledWith("new");
    expect(next).toHaveLength(1);
    sa.cancel();
    sb.cancel();
    expect(next[0]!.closed).toBe(true);
    expect(registry.size).toBe(0);
  });
});
