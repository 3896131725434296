// The token refresher against a scripted token endpoint, on fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TokenRefusedError, type OAuthError } from "../src/taskpane/oauth.js";
import { refreshDelayMs, startRefresher, type RefreshOptions } from "../src/taskpane/refresh.js";

const TOKEN_ENDPOINT = "https://idp.example.com/token";

type Answer = Response | Error;

/** A token endpoint answering from a script; each POST's form and time are recorded. */
function tokenEndpoint(answers: Answer[]) {
  const posts: { at: number; form: Record<string, string> }[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    expect(String(input)).toBe(TOKEN_ENDPOINT);
    expect(init?.method).toBe("POST");
    posts.push({ at: Date.now(), form: Object.fromEntries(new URLSearchParams(String(init?.body))) });
    const answer = answers.shift() ?? new Error("no more answers");
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { fetch, posts };
}

function start(answers: Answer[], expiresIn = 300) {
  const endpoint = tokenEndpoint(answers);
  const tokens: string[] = [];
  const errors: OAuthError[] = [];
  const options: RefreshOptions = {
    tokenEndpoint: TOKEN_ENDPOINT,
    clientId: "excel",
    refreshToken: "rt-1",
    expiresIn,
    fetch: endpoint.fetch,
    onToken: (token) => void tokens.push(token),
    onError: (error) => void errors.push(error),
  };
  const refresher = startRefresher(options);
  return { refresher, posts: endpoint.posts, tokens, errors };
}

const granted = (body: Record<string, unknown>): Response => Response.json({ token_type: "Bearer", ...body });

describe("refreshDelayMs", () => {
  it("is a minute before expiry, not sooner than 30 s, and 80% of a short lifetime", () => {
    expect(refreshDelayMs(3600)).toBe(3_540_000);
    expect(refreshDelayMs(300)).toBe(240_000);
    expect(refreshDelayMs(90)).toBe(30_000);
    expect(refreshDelayMs(60)).toBe(30_000);
    expect(refreshDelayMs(20)).toBe(16_000); // 30 s would be after it expired
    expect(refreshDelayMs(0.1)).toBe(1000); // never a busy loop
    expect(refreshDelayMs(60 * 86_400)).toBe(2 ** 31 - 1); // setTimeout's limit
  });
});

describe("startRefresher", () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  it("refreshes before expiry, rotates the refresh token and reschedules on the new lifetime", async () => {
    const t = start([
      granted({ access_token: "at-2", refresh_token: "rt-2", expires_in: 600 }),
      granted({ access_token: "at-3", expires_in: 120 }), // no rotation: rt-2 stays
      granted({ access_token: "at-4" }), // no lifetime: the last one stated (120 s) again
    ]);
    await vi.advanceTimersByTimeAsync(239_999);
    expect(t.posts).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.posts).toEqual([{ at: 240_000, form: { grant_type: "refresh_token", client_id: "excel", refresh_token: "rt-1" } }]);
    expect(t.tokens).toEqual(["at-2"]);

    await vi.advanceTimersByTimeAsync(540_000);
    expect(t.posts.map((p) => [p.at, p.form.refresh_token])).toEqual([
      [240_000, "rt-1"],
      [780_000, "rt-2"],
    ]);
    expect(t.tokens).toEqual(["at-2", "at-3"]);

    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.posts.map((p) => [p.at, p.form.refresh_token])).toEqual([
      [240_000, "rt-1"],
      [780_000, "rt-2"],
      [840_000, "rt-2"],
    ]);
    expect(t.tokens).toEqual(["at-2", "at-3", "at-4"]);
    expect(t.errors).toEqual([]);
    t.refresher.stop();
  });

  it("stops at an invalid_grant answer, without retrying", async () => {
    const t = start([Response.json({ error: "invalid_grant", error_description: "Token is not active" }, { status: 400 })]);
    await vi.advanceTimersByTimeAsync(240_000);
    expect(t.errors).toHaveLength(1);
    expect(t.errors[0]).toBeInstanceOf(TokenRefusedError);
    expect(t.errors[0]?.message).toBe("the issuer refused the refresh: invalid_grant (Token is not active)");
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(t.posts).toHaveLength(1);
    expect(t.tokens).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("retries a network error once after 30 s, then goes on", async () => {
    const t = start([new TypeError("fetch failed"), granted({ access_token: "at-2", expires_in: 300 })]);
    await vi.advanceTimersByTimeAsync(240_000);
    expect(t.posts).toHaveLength(1);
    expect(t.errors).toEqual([]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(t.posts.map((p) => p.at)).toEqual([240_000, 270_000]);
    expect(t.tokens).toEqual(["at-2"]);
    await vi.advanceTimersByTimeAsync(240_000);
    expect(t.posts.map((p) => p.at)).toEqual([240_000, 270_000, 510_000]); // rescheduled as usual
    t.refresher.stop();
  });

  it("reports a second network error in a row and stops", async () => {
    const t = start([new TypeError("fetch failed"), new TypeError("fetch failed")]);
    await vi.advanceTimersByTimeAsync(270_000);
    expect(t.posts).toHaveLength(2);
    expect(t.errors.map((e) => e.message)).toEqual(["the token endpoint is unreachable (fetch failed)"]);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(t.posts).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("retries a server error once, but not another refusal", async () => {
    const server = start([new Response("busy", { status: 503 }), new Response("busy", { status: 503 })]);
    await vi.advanceTimersByTimeAsync(270_000);
    expect(server.posts).toHaveLength(2);
    expect(server.errors.map((e) => e.message)).toEqual(["the token endpoint answered HTTP 503"]);

    const client = start([Response.json({ error: "invalid_client" }, { status: 401 })]);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(client.posts).toHaveLength(1);
    expect(client.errors.map((e) => e.message)).toEqual(["the issuer refused the refresh: invalid_client"]);
  });

  it("stop() cancels the pending refresh, and a refresh in flight calls back nothing", async () => {
    const t = start([granted({ access_token: "at-2", expires_in: 300 })]);
    t.refresher.stop();
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(t.posts).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);

    let answer: (response: Response) => void = () => undefined;
    const tokens: string[] = [];
    const inFlight = startRefresher({
      tokenEndpoint: TOKEN_ENDPOINT,
      clientId: "excel",
      refreshToken: "rt-1",
      expiresIn: 300,
      fetch: () => new Promise<Response>((resolve) => (answer = resolve)),
      onToken: (token) => void tokens.push(token),
      onError: () => void tokens.push("error"),
    });
    await vi.advanceTimersByTimeAsync(240_000);
    inFlight.stop();
    answer(granted({ access_token: "at-2", expires_in: 300 }));
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(tokens).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
