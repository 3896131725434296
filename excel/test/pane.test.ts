// The task pane's controller with a recording view, a fake endpoint, Excel from
// office-addin-mock and fake timers.
import { OfficeMockObject } from "office-addin-mock";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AppInfoLike } from "../src/core/apps.js";
import type { ExcelLike } from "../src/taskpane/office.js";
import { Pane, type EndpointLike, type PaneView } from "../src/taskpane/pane.js";
import type { Settings, SettingsErrors, SettingsStore } from "../src/taskpane/settings.js";
import type { PaneStatus } from "../src/taskpane/status.js";
import { controllableWatch } from "./helpers.js";

const app = (name: string, grids: string[], tenant = ""): AppInfoLike => ({
  name,
  tenant,
  status: 3,
  grids: grids.map((g) => ({ name: g })),
  message: "",
});

const LOCAL: Settings = { endpoint: "http://localhost:50051", token: "", issuer: "", clientId: "" };

function recordingView() {
  const seen = {
    settings: [] as Settings[],
    errors: [] as SettingsErrors[],
    statuses: [] as PaneStatus[],
    streams: [] as number[],
    apps: [] as string[][],
    messages: [] as { text: string; kind: string }[],
  };
  const view: PaneView = {
    showSettings: (s) => void seen.settings.push(s),
    showErrors: (e) => void seen.errors.push(e),
    showStatus: (s) => void seen.statuses.push(s),
    showStreams: (n) => void seen.streams.push(n),
    showApps: (apps) => void seen.apps.push(apps.map((a) => a.name)),
    showMessage: (text, kind) => void seen.messages.push({ text, kind }),
  };
  return { view, seen };
}

function setup(stored: Settings = LOCAL, excel?: ExcelLike) {
  const { view, seen } = recordingView();
  const streams: ReturnType<typeof controllableWatch>[] = [];
  const endpoints: { options: { baseUrl: string; token?: string }; endpoint: EndpointLike }[] = [];
  const configure = (options: { baseUrl: string; token?: string }): EndpointLike => {
    const stream = controllableWatch();
    streams.push(stream);
    const endpoint: EndpointLike = {
      catalog: { watchApps: (_request, { signal }) => stream.watch(signal) },
      tenants: new Map(),
    };
    endpoints.push({ options, endpoint });
    return endpoint;
  };
  const saved: Settings[] = [];
  const store: SettingsStore = { load: async () => stored, save: async (s) => void saved.push(s) };
  let open = 0;
  const signIn = vi.fn(async (_issuer: string, _clientId: string) => "signed-in-token");
  const pane = new Pane({
    configure,
    openStreams: () => open,
    store,
    view,
    excel: () => excel,
    clipboard: () => undefined,
    signIn,
    pollMs: 1000,
  });
  return { pane, seen, streams, endpoints, saved, signIn, setOpen: (n: number) => (open = n) };
}

describe("Pane", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("applies the stored settings to the functions and lists the apps live", async () => {
    const t = setup({ ...LOCAL, token: "tok" });
    await t.pane.start();
    expect(t.seen.settings).toEqual([{ ...LOCAL, token: "tok" }]);
    expect(t.endpoints.map((e) => e.options)).toEqual([{ baseUrl: "http://localhost:50051", token: "tok" }]);
    t.streams[0]?.push({ initial: true, apps: [app("orders", ["product_sum"], "acme"), app("clicks", [])], removed: [] });
    await vi.advanceTimersByTimeAsync(0);
    expect(t.seen.apps.at(-1)).toEqual(["clicks", "orders"]);
    expect(t.seen.statuses.at(-1)).toEqual({ state: "connected" });
    expect(t.endpoints[0]?.endpoint.tenants.get("orders")).toBe("acme"); // routing headers for grids

    t.setOpen(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.seen.streams.at(-1)).toBe(2);
    t.pane.stop();
    expect(t.streams[0]?.opened[0]?.aborted).toBe(true);
  });

  it("shows the reconnecting state with the last error", async () => {
    const t = setup();
    await t.pane.start();
    t.streams[0]?.fail(Object.assign(new Error("fetch failed"), { code: 14, rawMessage: "fetch failed" }));
    await vi.advanceTimersByTimeAsync(0);
    expect(t.seen.statuses.at(-1)).toMatchObject({ state: "reconnecting", error: "the endpoint is unreachable (fetch failed)" });
    t.pane.stop();
  });

  it("does not connect with invalid stored settings, and says why", async () => {
    const t = setup({ ...LOCAL, endpoint: "nonsense" });
    await t.pane.start();
    expect(t.endpoints).toHaveLength(0);
    expect(t.seen.errors.at(-1)?.endpoint).toMatch(/not a URL/);
    expect(t.seen.statuses.at(-1)).toEqual({ state: "error", error: "the connection settings need fixing" });
    t.pane.stop();
  });

  it("refuses invalid settings field by field, and applies valid ones to a fresh watch", async () => {
    const t = setup();
    await t.pane.start();
    expect(await t.pane.apply({ ...LOCAL, endpoint: "ftp://x" })).toBe(false);
    expect(t.seen.errors.at(-1)?.endpoint).toMatch(/http/);
    expect(t.endpoints).toHaveLength(1);

    expect(await t.pane.apply({ ...LOCAL, endpoint: "https://grid.example.com/", token: "Bearer abc" })).toBe(true);
    expect(t.saved).toEqual([{ ...LOCAL, endpoint: "https://grid.example.com", token: "abc" }]);
    expect(t.endpoints.at(-1)?.options).toEqual({ baseUrl: "https://grid.example.com", token: "abc" });
    expect(t.streams[0]?.opened[0]?.aborted).toBe(true); // the old endpoint's watch is closed
    expect(t.seen.errors.at(-1)).toEqual({});
    t.pane.stop();
  });

  it("inserts a grid's formula at the selected cell, and shows Excel's failure as text", async () => {
    const mock = new OfficeMockObject({
      context: {
        workbook: {
          range: { cell: {}, getCell: function (this: { cell: unknown }) { return this.cell; } },
          getSelectedRange: function (this: { range: unknown }) { return this.range; },
        },
      },
      run: async function (this: { context: unknown }, batch: (context: unknown) => Promise<unknown>) {
        return batch(this.context);
      },
    });
    const t = setup(LOCAL, mock as unknown as ExcelLike);
    await t.pane.start();
    expect((await t.pane.insert("orders", "product_sum")).ok).toBe(true);
    expect(mock.context.workbook.range.cell.formulas).toEqual([['=AEROGRID.GRID("orders","product_sum")']]);
    expect(t.seen.messages.at(-1)).toEqual({ text: 'Inserted =AEROGRID.GRID("orders","product_sum")', kind: "info" });

    const failing = setup(LOCAL, { run: () => Promise.reject(new Error("Excel is busy")) });
    await failing.pane.start();
    expect((await failing.pane.insert("orders", "product_sum")).ok).toBe(false);
    expect(failing.seen.messages.at(-1)).toEqual({ text: "Could not insert the formula: Excel is busy", kind: "error" });
    t.pane.stop();
    failing.pane.stop();
  });

  it("signs in, then applies the token; a failed sign-in is shown", async () => {
    const t = setup();
    await t.pane.start();
    await t.pane.signIn({ ...LOCAL, issuer: "" });
    expect(t.seen.errors.at(-1)?.issuer).toMatch(/issuer/);

    const withIssuer = { ...LOCAL, issuer: "https://idp.example.com", clientId: "excel" };
    await t.pane.signIn(withIssuer);
    expect(t.signIn).toHaveBeenCalledWith("https://idp.example.com", "excel");
    expect(t.endpoints.at(-1)?.options).toEqual({ baseUrl: "http://localhost:50051", token: "signed-in-token" });
    expect(t.saved.at(-1)).toEqual({ ...withIssuer, token: "signed-in-token" });
    expect(t.seen.messages.at(-1)).toEqual({ text: "Signed in.", kind: "info" });

    t.signIn.mockRejectedValueOnce(new Error("the sign-in dialog was closed"));
    await t.pane.signIn(withIssuer);
    expect(t.seen.messages.at(-1)).toEqual({ text: "Sign-in failed: the sign-in dialog was closed", kind: "error" });
    t.pane.stop();
  });
});
