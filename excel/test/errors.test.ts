import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ArgumentError, isRetryable, toCellText } from "../src/core/errors.js";

describe("toCellText", () => {
  it("turns every kind of error into one readable line", () => {
    expect(toCellText(new ArgumentError("bad option"))).toBe("AeroGrid: bad option");
    expect(toCellText(new TypeError("Failed to fetch"))).toBe("AeroGrid: Failed to fetch");
    expect(toCellText("plain\n text")).toBe("AeroGrid: plain text");
    expect(toCellText(undefined)).toBe("AeroGrid: unknown error");
    expect(toCellText({})).toBe("AeroGrid: unknown error");
  });

  it("explains Connect/gRPC status codes (real ConnectError instances)", () => {
    expect(toCellText(new ConnectError("token expired", Code.Unauthenticated))).toBe(
      "AeroGrid: not signed in, or the token has expired (token expired)",
    );
    expect(toCellText(new ConnectError("", Code.Unavailable))).toBe("AeroGrid: the endpoint is unreachable");
    // connect-web's code for a fetch that reached no server
    expect(toCellText(new ConnectError("Failed to fetch", Code.Unknown))).toBe(
      "AeroGrid: the endpoint is unreachable (Failed to fetch)",
    );
    expect(toCellText(new ConnectError("boom", Code.Unknown))).toBe("AeroGrid: the server failed (boom)");
    expect(toCellText(new ConnectError("unknown grid ordersapp.nope", Code.NotFound))).toBe(
      "AeroGrid: not found (unknown grid ordersapp.nope)",
    );
  });

  it("keeps a cell's text short", () => {
    const text = toCellText(new Error("x".repeat(1000)));
    expect(text.length).toBe(255);
    expect(text.endsWith("…")).toBe(true);
  });
});

describe("isRetryable", () => {
  it("retries transport trouble, not refusals", () => {
    expect(isRetryable(new TypeError("Failed to fetch"))).toBe(true);
    expect(isRetryable(new ConnectError("", Code.Unavailable))).toBe(true);
    expect(isRetryable(new ConnectError("", Code.Internal))).toBe(true);
    expect(isRetryable(new ConnectError("", Code.PermissionDenied))).toBe(false);
    expect(isRetryable(new ConnectError("", Code.Unauthenticated))).toBe(false);
    expect(isRetryable(new ConnectError("", Code.NotFound))).toBe(false);
    expect(isRetryable(new ArgumentError("x"))).toBe(false);
  });
});
