// The sign-in dialog's page, both ends of the redirect, with a fake issuer.
import { describe, expect, it } from "vitest";
import { PENDING_KEY, redirectUriOf, runSigninPage, signinPageUrl, type SigninPageDeps } from "../src/taskpane/signin-page.js";

const ISSUER = "https://idp.example.com";
const PAGE = "https://localhost:50051/addin/signin.html";

function sessionStorage() {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => void items.set(key, value),
    removeItem: (key: string) => void items.delete(key),
  };
}

/** An issuer: discovery, and a token endpoint that checks the code and verifier it is sent. */
function fakeIssuer(expectedCode = "the-code", scopes?: string[]) {
  const posts: URLSearchParams[] = [];
  let verifier: string | undefined;
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const url = String(input);
    if (url === `${ISSUER}/.well-known/openid-configuration`) {
      const doc = { issuer: ISSUER, authorization_endpoint: `${ISSUER}/authorize`, token_endpoint: `${ISSUER}/token` };
      return Response.json(scopes === undefined ? doc : { ...doc, scopes_supported: scopes });
    }
    if (url === `${ISSUER}/token` && init?.method === "POST") {
      const body = new URLSearchParams(String(init.body));
      posts.push(body);
      if (body.get("code") !== expectedCode || body.get("code_verifier") !== verifier) {
        return Response.json({ error: "invalid_grant" }, { status: 400 });
      }
      const refresh = scopes?.includes("offline_access") ? { refresh_token: "the-refresh-token" } : {};
      return Response.json({ access_token: "the-token", token_type: "Bearer", expires_in: 600, ...refresh });
    }
    return new Response("not found", { status: 404 });
  };
  return { fetch, posts, setVerifier: (v: string | undefined) => (verifier = v) };
}

function page(href: string, storage: ReturnType<typeof sessionStorage>, issuer: ReturnType<typeof fakeIssuer>) {
  const navigated: string[] = [];
  const replies: unknown[] = [];
  const deps: SigninPageDeps = {
    href,
    storage,
    fetch: issuer.fetch,
    crypto: globalThis.crypto,
    navigate: (url) => navigated.push(url),
    reply: (message) => replies.push(JSON.parse(message)),
  };
  return { deps, navigated, replies };
}

describe("the sign-in page", () => {
  it("builds its URL and redirect URI", () => {
    expect(signinPageUrl(PAGE, ISSUER, "excel")).toBe(`${PAGE}?issuer=https%3A%2F%2Fidp.example.com&client_id=excel`);
    expect(redirectUriOf(`${PAGE}?code=x&state=y`)).toBe(PAGE);
  });

  it("goes to the issuer, then exchanges the code it brings back and replies with the token", async () => {
    const storage = sessionStorage();
    const issuer = fakeIssuer();
    const start = page(signinPageUrl(PAGE, ISSUER, "excel"), storage, issuer);
    await runSigninPage(start.deps);
    expect(start.replies).toEqual([]);
    const authorize = new URL(start.navigated[0] ?? "");
    expect(`${authorize.origin}${authorize.pathname}`).toBe(`${ISSUER}/authorize`);
    expect(authorize.searchParams.get("redirect_uri")).toBe(PAGE);
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    expect(authorize.searchParams.get("scope")).toBe("openid profile"); // no offline_access unless listed
    const pending = JSON.parse(storage.items.get(PENDING_KEY) ?? "{}") as { verifier: string; state: string };
    expect(authorize.searchParams.get("state")).toBe(pending.state);
    issuer.setVerifier(pending.verifier);

    const back = page(`${PAGE}?code=the-code&state=${pending.state}`, storage, issuer);
    await runSigninPage(back.deps);
    expect(back.replies).toEqual([{ ok: true, token: "the-token", expiresIn: 600 }]);
    expect(issuer.posts[0]?.get("redirect_uri")).toBe(PAGE);
    expect(storage.items.has(PENDING_KEY)).toBe(false); // one answer per sign-in
  });

  it("asks for offline_access when the issuer lists it, and hands the refresh token on", async () => {
    const storage = sessionStorage();
    const issuer = fakeIssuer("the-code", ["openid", "profile", "offline_access"]);
    const start = page(signinPageUrl(PAGE, ISSUER, "excel"), storage, issuer);
    await runSigninPage(start.deps);
    expect(new URL(start.navigated[0] ?? "").searchParams.get("scope")).toBe("openid profile offline_access");
    const pending = JSON.parse(storage.items.get(PENDING_KEY) ?? "{}") as { verifier: string; state: string };
    expect(JSON.stringify(pending)).not.toMatch(/refresh/);
    issuer.setVerifier(pending.verifier);

    const back = page(`${PAGE}?code=the-code&state=${pending.state}`, storage, issuer);
    await runSigninPage(back.deps);
    expect(back.replies).toEqual([{ ok: true, token: "the-token", refreshToken: "the-refresh-token", expiresIn: 600 }]);
    expect(storage.items.size).toBe(0); // nothing of the sign-in stays in the dialog's storage
  });

  it("refuses an answer with another state, without asking the issuer", async () => {
    const storage = sessionStorage();
    const issuer = fakeIssuer();
    await runSigninPage(page(signinPageUrl(PAGE, ISSUER, "excel"), storage, issuer).deps);
    const back = page(`${PAGE}?code=the-code&state=forged`, storage, issuer);
    await runSigninPage(back.deps);
    expect(back.replies).toEqual([{ ok: false, error: "the sign-in answer does not match this sign-in (state); start again" }]);
    expect(issuer.posts).toHaveLength(0);
  });

  it("replies with the issuer's refusal and with a missing issuer", async () => {
    const refused = page(`${PAGE}?error=access_denied&state=s`, sessionStorage(), fakeIssuer());
    await runSigninPage(refused.deps);
    expect(refused.replies).toEqual([{ ok: false, error: "the issuer refused the sign-in: access_denied" }]);
    const bare = page(PAGE, sessionStorage(), fakeIssuer());
    await runSigninPage(bare.deps);
    expect(bare.replies).toEqual([{ ok: false, error: "sign-in needs an issuer and a client id" }]);
  });
});
