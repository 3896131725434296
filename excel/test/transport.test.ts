// The transport with an injected fetch: which URL and headers a grid call sends.
import { describe, expect, it } from "vitest";
import { APP_HEADER, ServiceClients, TENANT_HEADER, normalizeBaseUrl } from "../src/transport.js";

interface Seen {
  url: string;
  headers: Headers;
}

function recordingFetch(seen: Seen[]): typeof globalThis.fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    seen.push({ url: request.url, headers: request.headers });
    return new Response(JSON.stringify({ code: "not_found", message: "no such grid" }), {
      status: 404,
      headers: { "content-type": "application/json" },
    });
  };
}

async function drain(iterable: AsyncIterable<unknown>): Promise<unknown> {
  try {
    for await (const _ of iterable) {
      // nothing is expected
    }
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("ServiceClients", () => {
  it("sends the token and the routing headers on Subscribe, at the base URL", async () => {
    const seen: Seen[] = [];
    const clients = new ServiceClients({
      baseUrl: "http://example.test:50051/",
      token: " secret ",
      tenantOf: (app) => (app === "orders" ? "acme" : undefined),
      fetch: recordingFetch(seen),
    });
    const error = await drain(
      clients.subscribe({ app: "orders", grid: "product_sum", resumeEpoch: "", resumeSeq: 0n }, new AbortController().signal),
    );
    expect(error).toBeDefined();
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe("http://example.test:50051/aerogrid.v1.GridService/Subscribe");
    expect(seen[0]?.headers.get("authorization")).toBe("Bearer secret");
    expect(seen[0]?.headers.get(APP_HEADER)).toBe("orders");
    expect(seen[0]?.headers.get(TENANT_HEADER)).toBe("acme");
  });

  it("asks an app for its grids with the routing headers (what a cluster's gateway needs)", async () => {
    const seen: Seen[] = [];
    const clients = new ServiceClients({
      baseUrl: "https://aerogrid.example.com",
      token: "t",
      useBinaryFormat: false,
      fetch: async (input, init) => {
        const request = new Request(input, init);
        seen.push({ url: request.url, headers: request.headers });
        return new Response(JSON.stringify({ grids: [{ name: "quotes", app: "orders" }] }), {
          status: 200,
          headers: { "content-type": "application/json" },
        });
      },
    });
    clients.tenants.set("orders", "acme");
    const grids = await clients.listGrids("orders", new AbortController().signal);
    expect(grids.map((g) => g.name)).toEqual(["quotes"]);
    expect(seen[0]?.url).toBe("https://aerogrid.example.com/aerogrid.v1.GridService/ListGrids");
    expect(seen[0]?.headers.get(APP_HEADER)).toBe("orders");
    expect(seen[0]?.headers.get(TENANT_HEADER)).toBe("acme");
    expect(seen[0]?.headers.get("authorization")).toBe("Bearer t");
  });

  it("sends no token when none is set, and the tenant only when known", async () => {
    const seen: Seen[] = [];
    const clients = new ServiceClients({ baseUrl: "http://example.test", fetch: recordingFetch(seen) });
    await drain(clients.subscribe({ app: "a", grid: "g", resumeEpoch: "", resumeSeq: 0n }, new AbortController().signal));
    clients.tenants.set("a", "learned");
    await drain(clients.subscribe({ app: "a", grid: "g", resumeEpoch: "", resumeSeq: 0n }, new AbortController().signal));
    expect(seen[0]?.headers.get("authorization")).toBeNull();
    expect(seen[0]?.headers.get(TENANT_HEADER)).toBeNull();
    expect(seen[1]?.headers.get(TENANT_HEADER)).toBe("learned");
  });

  it("refuses a base URL that is not http(s)", () => {
    expect(() => normalizeBaseUrl("localhost:50051")).toThrow(/http/);
    expect(() => normalizeBaseUrl("not a url")).toThrow(/not a URL/);
    expect(normalizeBaseUrl("https://x.test/")).toBe("https://x.test");
  });
});
