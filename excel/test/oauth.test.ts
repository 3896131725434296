// OAuth code + PKCE: the pure parts, and discovery / exchange over a fake fetch.
import { describe, expect, it } from "vitest";
import {
  authorizationUrl,
  base64url,
  challengeOf,
  createPkce,
  discover,
  discoveryUrl,
  exchangeCode,
  isCallback,
  parseDiscovery,
  parseSigninMessage,
  parseTokenResponse,
  readCallback,
  refreshRequest,
  scopeFor,
  signinMessageOf,
  tokenOfMessage,
  TokenRefusedError,
  tokenRequest,
  type CryptoLike,
} from "../src/taskpane/oauth.js";

const ISSUER = "https://idp.example.com/realms/aerogrid";
const DISCOVERY = {
  issuer: ISSUER,
  authorization_endpoint: `${ISSUER}/protocol/openid-connect/auth`,
  token_endpoint: `${ISSUER}/protocol/openid-connect/token`,
};

/** WebCrypto with predictable random bytes (the digest is the real one). */
const fixedCrypto = (fill: number): CryptoLike => ({
  getRandomValues: (array) => array.fill(fill),
  subtle: globalThis.crypto.subtle,
});

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

describe("PKCE", () => {
  it("computes RFC 7636's S256 challenge (appendix B)", async () => {
    expect(await challengeOf("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", globalThis.crypto)).toBe(
      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
  });

  it("makes a 43-character base64url verifier from 32 random bytes", async () => {
    const pair = await createPkce(fixedCrypto(0xff));
    expect(pair.verifier).toBe("_".repeat(42) + "8");
    expect(pair.verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(pair.challenge).toBe(await challengeOf(pair.verifier, globalThis.crypto));
    const real = await createPkce(globalThis.crypto);
    expect(real.verifier).not.toBe((await createPkce(globalThis.crypto)).verifier);
  });

  it("encodes base64url without padding", () => {
    expect(base64url(new Uint8Array([0xfb, 0xff]))).toBe("-_8");
  });
});

describe("discovery", () => {
  it("reads the endpoints and checks the issuer", () => {
    expect(discoveryUrl(`${ISSUER}/`)).toBe(`${ISSUER}/.well-known/openid-configuration`);
    expect(parseDiscovery(DISCOVERY, `${ISSUER}/`)).toEqual({
      issuer: ISSUER,
      authorizationEndpoint: DISCOVERY.authorization_endpoint,
      tokenEndpoint: DISCOVERY.token_endpoint,
    });
    expect(() => parseDiscovery({ ...DISCOVERY, issuer: "https://evil.example.com" }, ISSUER)).toThrow(/another issuer/);
    expect(() => parseDiscovery({ ...DISCOVERY, token_endpoint: undefined }, ISSUER)).toThrow(/no token_endpoint/);
    expect(() => parseDiscovery({ ...DISCOVERY, token_endpoint: "http://idp.example.com/t" }, ISSUER)).toThrow(/not https/);
    expect(() => parseDiscovery("nope", ISSUER)).toThrow(/not JSON/);
  });

  it("asks for offline_access only when the issuer lists it", () => {
    const plain = parseDiscovery(DISCOVERY, ISSUER);
    expect(scopeFor(plain)).toBe("openid profile");
    const listed = parseDiscovery({ ...DISCOVERY, scopes_supported: ["openid", "profile", "offline_access", 7] }, ISSUER);
    expect(listed.scopesSupported).toEqual(["openid", "profile", "offline_access"]);
    expect(scopeFor(listed)).toBe("openid profile offline_access");
    expect(scopeFor(parseDiscovery({ ...DISCOVERY, scopes_supported: ["openid", "email"] }, ISSUER))).toBe("openid profile");
    expect(scopeFor(parseDiscovery({ ...DISCOVERY, scopes_supported: "offline_access" }, ISSUER))).toBe("openid profile");
  });

  it("fetches the document and reports HTTP and network failures", async () => {
    const asked: string[] = [];
    const ok = await discover(ISSUER, async (url) => {
      asked.push(String(url));
      return json(200, DISCOVERY);
    });
    expect(asked).toEqual([`${ISSUER}/.well-known/openid-configuration`]);
    expect(ok.tokenEndpoint).toBe(DISCOVERY.token_endpoint);
    await expect(discover(ISSUER, async () => json(404, {}))).rejects.toThrow(/HTTP 404/);
    await expect(discover(ISSUER, () => Promise.reject(new TypeError("fetch failed")))).rejects.toThrow(
      /unreachable \(fetch failed\)/,
    );
  });
});

describe("authorization request and callback", () => {
  it("builds the authorization URL with state and the S256 challenge", () => {
    const url = new URL(
      authorizationUrl({
        authorizationEndpoint: `${DISCOVERY.authorization_endpoint}?kc_idp_hint=x`,
        clientId: "excel",
        redirectUri: "https://localhost:50051/addin/signin.html",
        state: "st",
        challenge: "ch",
      }),
    );
    expect(Object.fromEntries(url.searchParams)).toEqual({
      kc_idp_hint: "x",
      response_type: "code",
      client_id: "excel",
      redirect_uri: "https://localhost:50051/addin/signin.html",
      scope: "openid profile",
      state: "st",
      code_challenge: "ch",
      code_challenge_method: "S256",
    });
  });

  it("returns the code only for the expected state", () => {
    expect(isCallback("?code=c&state=s")).toBe(true);
    expect(isCallback("?issuer=x&client_id=y")).toBe(false);
    expect(readCallback("?code=c&state=s", "s")).toBe("c");
    expect(() => readCallback("?code=c&state=other", "s")).toThrow(/state/);
    expect(() => readCallback("?code=c&state=s", null)).toThrow(/state/);
    expect(() => readCallback("?state=s", "s")).toThrow(/no code/);
    expect(() => readCallback("?error=access_denied&error_description=User%20said%20no&state=s", "s")).toThrow(
      "the issuer refused the sign-in: access_denied (User said no)",
    );
  });
});

describe("token exchange", () => {
  const exchange = {
    tokenEndpoint: DISCOVERY.token_endpoint,
    clientId: "excel",
    redirectUri: "https://localhost:50051/addin/signin.html",
    code: "the-code",
    verifier: "the-verifier",
  };

  it("posts the code and verifier as a form", () => {
    const { url, init } = tokenRequest(exchange);
    expect(url).toBe(DISCOVERY.token_endpoint);
    expect(init.method).toBe("POST");
    expect(Object.fromEntries(new URLSearchParams(String(init.body)))).toEqual({
      grant_type: "authorization_code",
      code: "the-code",
      redirect_uri: exchange.redirectUri,
      client_id: "excel",
      code_verifier: "the-verifier",
    });
  });

  it("posts a refresh as a form", () => {
    const { url, init } = refreshRequest({ tokenEndpoint: DISCOVERY.token_endpoint, clientId: "excel", refreshToken: "rt" });
    expect(url).toBe(DISCOVERY.token_endpoint);
    expect(init.method).toBe("POST");
    expect(init.headers).toMatchObject({ "content-type": "application/x-www-form-urlencoded" });
    expect(Object.fromEntries(new URLSearchParams(String(init.body)))).toEqual({
      grant_type: "refresh_token",
      client_id: "excel",
      refresh_token: "rt",
    });
  });

  it("reads the refresh token when there is one", () => {
    expect(parseTokenResponse(200, { access_token: "at", refresh_token: "rt", expires_in: 300 })).toEqual({
      accessToken: "at",
      refreshToken: "rt",
      expiresIn: 300,
    });
    expect(parseTokenResponse(200, { access_token: "at", refresh_token: "" })).toEqual({ accessToken: "at" });
    let refused: unknown;
    try {
      parseTokenResponse(400, { error: "invalid_grant", error_description: "Token is not active" }, "the refresh");
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(TokenRefusedError);
    expect(refused).toMatchObject({ code: "invalid_grant", message: "the issuer refused the refresh: invalid_grant (Token is not active)" });
  });

  it("parses the token response and its errors", () => {
    expect(parseTokenResponse(200, { access_token: "at", token_type: "Bearer", expires_in: 300 })).toEqual({
      accessToken: "at",
      expiresIn: 300,
    });
    expect(() => parseTokenResponse(400, { error: "invalid_grant", error_description: "Code not valid" })).toThrow(
      "the issuer refused the code: invalid_grant (Code not valid)",
    );
    expect(() => parseTokenResponse(500, null)).toThrow(/HTTP 500/);
    expect(() => parseTokenResponse(200, { token_type: "Bearer" })).toThrow(/no access_token/);
    expect(() => parseTokenResponse(200, { access_token: "at", token_type: "mac" })).toThrow(/not a bearer/);
  });

  it("exchanges over fetch", async () => {
    const token = await exchangeCode(exchange, async () => json(200, { access_token: "at", token_type: "bearer" }));
    expect(token).toEqual({ accessToken: "at" });
  });
});

describe("the dialog's message", () => {
  it("parses a token or an error, and refuses anything else", () => {
    expect(parseSigninMessage('{"ok":true,"token":"at","expiresIn":60}')).toEqual({ ok: true, token: "at", expiresIn: 60 });
    expect(parseSigninMessage('{"ok":false,"error":"nope"}')).toEqual({ ok: false, error: "nope" });
    expect(parseSigninMessage('{"ok":true,"token":"at","refreshToken":"rt","expiresIn":60}')).toEqual({
      ok: true,
      token: "at",
      refreshToken: "rt",
      expiresIn: 60,
    });
    expect(parseSigninMessage('{"ok":true,"token":"at"}')).toEqual({ ok: true, token: "at" }); // an older page's
    expect(parseSigninMessage('{"ok":true,"token":"at","refreshToken":5,"expiresIn":"60"}')).toEqual({ ok: true, token: "at" });
    expect(parseSigninMessage('{"ok":true}').ok).toBe(false);
    expect(parseSigninMessage("garbage").ok).toBe(false);
  });

  it("carries a token there and back", () => {
    const full = { accessToken: "at", refreshToken: "rt", expiresIn: 60 };
    expect(signinMessageOf(full)).toEqual({ ok: true, token: "at", refreshToken: "rt", expiresIn: 60 });
    expect(signinMessageOf({ accessToken: "at" })).toEqual({ ok: true, token: "at" });
    const parsed = parseSigninMessage(JSON.stringify(signinMessageOf(full)));
    expect(parsed.ok && tokenOfMessage(parsed)).toEqual(full);
    expect(tokenOfMessage({ token: "at" })).toEqual({ accessToken: "at" });
  });
});
