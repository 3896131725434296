// The task pane's controller with a recording view, a fake endpoint, Excel from
// office-addin-mock and fake timers.
import { OfficeMockObject } from "office-addin-mock";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { AppInfoLike } from "../src/core/apps.js";
import type { Token } from "../src/taskpane/oauth.js";
import type { ExcelLike } from "../src/taskpane/office.js";
import { EXPIRED_MESSAGE, Pane, type ServiceClientsLike, type PaneView } from "../src/taskpane/pane.js";
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

const ISSUER = "https://idp.example.com";
const SIGNED_IN: Settings = { ...LOCAL, issuer: ISSUER, clientId: "excel" };

/** An issuer for the pane's renewal: discovery, and a token endpoint answering from a script. */
function fakeIssuer() {
  const refreshes: Record<string, string>[] = [];
  const answers: (Response | Error)[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const url = String(input);
    if (url === `${ISSUER}/.well-known/openid-configuration`) {
      return Response.json({ issuer: ISSUER, authorization_endpoint: `${ISSUER}/authorize`, token_endpoint: `${ISSUER}/token` });
    }
    if (url === `${ISSUER}/token` && init?.method === "POST") {
      refreshes.push(Object.fromEntries(new URLSearchParams(String(init.body))));
      const answer = answers.shift() ?? new Error("no answer scripted");
      if (answer instanceof Error) throw answer;
      return answer;
    }
    return new Response("not found", { status: 404 });
  };
  return { fetch, refreshes, answers };
}

function setup(stored: Settings = LOCAL, excel?: ExcelLike) {
  const { view, seen } = recordingView();
  const streams: ReturnType<typeof controllableWatch>[] = [];
  const endpoints: { options: { baseUrl: string; token?: string }; clients: ServiceClientsLike }[] = [];
  const configure = (options: { baseUrl: string; token?: string }): ServiceClientsLike => {
    const stream = controllableWatch();
    streams.push(stream);
    const clients: ServiceClientsLike = {
      catalog: { watchApps: (_request, { signal }) => stream.watch(signal) },
      tenants: new Map(),
    };
    endpoints.push({ options, clients });
    return clients;
  };
  const saved: Settings[] = [];
  const store: SettingsStore = { load: async () => stored, save: async (s) => void saved.push(s) };
  let open = 0;
  const signIn = vi.fn(async (_issuer: string, _clientId: string): Promise<Token> => ({ accessToken: "signed-in-token" }));
  const issuer = fakeIssuer();
  const pane = new Pane({
    configure,
    openStreams: () => open,
    store,
    view,
    excel: () => excel,
    clipboard: () => undefined,
    signIn,
    fetch: issuer.fetch,
    pollMs: 1000,
  });
  return { pane, seen, streams, endpoints, saved, signIn, issuer, setOpen: (n: number) => (open = n) };
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
    expect(t.endpoints[0]?.clients.tenants.get("orders")).toBe("acme"); // routing headers for grids

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

  describe("renewing a signed-in token", () => {
    const renewable: Token = { accessToken: "at-1", refreshToken: "rt-1", expiresIn: 300 };
    const granted = (access: string, refresh?: string): Response =>
      Response.json({ access_token: access, token_type: "Bearer", expires_in: 300, ...(refresh ? { refresh_token: refresh } : {}) });

    async function signedIn() {
      const t = setup();
      await t.pane.start();
      t.signIn.mockResolvedValueOnce(renewable);
      await t.pane.signIn(SIGNED_IN);
      expect(t.endpoints.at(-1)?.options).toEqual({ baseUrl: "http://localhost:50051", token: "at-1" });
      return t;
    }

    it("refreshes after sign-in and applies each new token through configure, never saving the refresh token", async () => {
      const t = await signedIn();
      t.issuer.answers.push(granted("at-2", "rt-2"), granted("at-3"));
      await vi.advanceTimersByTimeAsync(240_000); // a minute before the 300 s token expires
      expect(t.issuer.refreshes).toEqual([{ grant_type: "refresh_token", client_id: "excel", refresh_token: "rt-1" }]);
      expect(t.endpoints.at(-1)?.options).toEqual({ baseUrl: "http://localhost:50051", token: "at-2" });
      expect(t.seen.settings.at(-1)).toEqual({ ...SIGNED_IN, token: "at-2" }); // the form a later Apply sends
      expect(t.saved.at(-1)).toEqual({ ...SIGNED_IN, token: "at-2" });

      await vi.advanceTimersByTimeAsync(240_000);
      expect(t.issuer.refreshes.map((r) => r.refresh_token)).toEqual(["rt-1", "rt-2"]); // rotated
      expect(t.endpoints.at(-1)?.options.token).toBe("at-3");
      expect(JSON.stringify(t.saved)).not.toMatch(/rt-/);
      expect(t.seen.messages.at(-1)).toEqual({ text: "Signed in.", kind: "info" });

      t.pane.stop();
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(t.issuer.refreshes).toHaveLength(2);
    });

    it("stops on a change of settings, but not on the same settings applied again", async () => {
      const t = await signedIn();
      await t.pane.apply({ ...SIGNED_IN, token: "at-1" });
      t.issuer.answers.push(granted("at-2"));
      await vi.advanceTimersByTimeAsync(240_000);
      expect(t.issuer.refreshes).toHaveLength(1);

      await t.pane.apply({ ...SIGNED_IN, token: "pasted" });
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(t.issuer.refreshes).toHaveLength(1);
      expect(t.endpoints.at(-1)?.options.token).toBe("pasted");
      t.pane.stop();
    });

    it("a new sign-in replaces the last one's renewal", async () => {
      const t = await signedIn();
      await vi.advanceTimersByTimeAsync(100_000);
      t.signIn.mockResolvedValueOnce({ accessToken: "at-b", refreshToken: "rt-b", expiresIn: 300 });
      await t.pane.signIn(SIGNED_IN);
      t.issuer.answers.push(granted("at-b2"));
      await vi.advanceTimersByTimeAsync(240_000); // the first sign-in's refresh (at 240 s) never runs
      expect(t.issuer.refreshes.map((r) => r.refresh_token)).toEqual(["rt-b"]);
      expect(t.endpoints.at(-1)?.options.token).toBe("at-b2");
      t.pane.stop();
    });

    it("says the sign-in has expired when the issuer refuses the refresh", async () => {
      const t = await signedIn();
      t.issuer.answers.push(Response.json({ error: "invalid_grant" }, { status: 400 }));
      await vi.advanceTimersByTimeAsync(240_000);
      expect(t.seen.messages.at(-1)).toEqual({ text: EXPIRED_MESSAGE, kind: "error" });
      expect(t.endpoints.at(-1)?.options.token).toBe("at-1");

      const offline = await signedIn();
      offline.issuer.answers.push(new TypeError("fetch failed"), new TypeError("fetch failed"));
      await vi.advanceTimersByTimeAsync(270_000);
      expect(offline.seen.messages.at(-1)).toEqual({
        text: "Your sign-in could not be renewed (the token endpoint is unreachable (fetch failed)): sign in again.",
        kind: "error",
      });
      t.pane.stop();
      offline.pane.stop();
    });

    it("does not renew without a refresh token", async () => {
      const t = setup();
      await t.pane.start();
      t.signIn.mockResolvedValueOnce({ accessToken: "at-1", expiresIn: 300 });
      await t.pane.signIn(SIGNED_IN);
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(t.issuer.refreshes).toHaveLength(0);
      t.pane.stop();
    });
  });
});
