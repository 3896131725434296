// The pane's connection status from the reconnector's events.
import { describe, expect, it } from "vitest";
import { INITIAL_STATUS, nextStatus, statusText, streamsText } from "../src/taskpane/status.js";

const unreachable = Object.assign(new Error("fetch failed"), { code: 14, rawMessage: "fetch failed" });

describe("nextStatus", () => {
  it("goes connecting → connected", () => {
    const connecting = nextStatus(INITIAL_STATUS, { state: "connecting", attempt: 0 });
    expect(connecting).toEqual({ state: "connecting" });
    expect(nextStatus(connecting, { state: "connected" })).toEqual({ state: "connected" });
  });

  it("keeps the last error while reconnecting, and clears it once connected", () => {
    const waiting = nextStatus({ state: "connected" }, { state: "waiting", attempt: 1, delayMs: 2000, error: unreachable });
    expect(waiting).toEqual({ state: "reconnecting", error: "the endpoint is unreachable (fetch failed)", retryInMs: 2000 });
    expect(statusText(waiting)).toBe("Reconnecting in 2 s: the endpoint is unreachable (fetch failed)");
    const retry = nextStatus(waiting, { state: "connecting", attempt: 1 });
    expect(retry).toEqual({ state: "reconnecting", error: "the endpoint is unreachable (fetch failed)" });
    expect(nextStatus(retry, { state: "connected" })).toEqual({ state: "connected" });
  });

  it("ends in error on a failure that retrying cannot fix", () => {
    const denied = Object.assign(new Error("x"), { code: 16, rawMessage: "" });
    const status = nextStatus(INITIAL_STATUS, { state: "failed", error: denied });
    expect(status).toEqual({ state: "error", error: "not signed in, or the token has expired" });
    expect(statusText(status)).toBe("Error: not signed in, or the token has expired");
  });

  it("ignores stop", () => {
    expect(nextStatus({ state: "connected" }, { state: "stopped" })).toEqual({ state: "connected" });
  });
});

describe("texts", () => {
  it("count open streams", () => {
    expect(streamsText(0)).toBe("0 open streams");
    expect(streamsText(1)).toBe("1 open stream");
    expect(statusText({ state: "connecting" })).toBe("Connecting…");
  });
});
