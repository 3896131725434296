// OAuth 2.0 authorization code + PKCE (S256, RFC 7636) against an OIDC issuer: discovery,
// the authorization URL, the callback's state check, the code exchange, the refresh request
// and the token response.
// Pure apart from the injected fetch and WebCrypto, so it is unit-tested in Node.

export class OAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OAuthError";
  }
}

export interface Discovery {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  /** The document's scopes_supported, when it lists them. */
  scopesSupported?: string[];
}

export interface Token {
  accessToken: string;
  /** When the issuer grants one (offline_access, or its own policy). */
  refreshToken?: string;
  /** Seconds, when the issuer says. */
  expiresIn?: number;
}

type Json = Record<string, unknown>;
type Fetch = typeof globalThis.fetch;

export const DEFAULT_SCOPE = "openid profile";
export const OFFLINE_SCOPE = "offline_access";

const trimSlash = (url: string): string => url.replace(/\/+$/, "");

export function discoveryUrl(issuer: string): string {
  return `${trimSlash(issuer)}/.well-known/openid-configuration`;
}

function endpointUrl(json: Json, key: string): string {
  const value = json[key];
  if (typeof value !== "string" || value === "") throw new OAuthError(`the issuer's configuration has no ${key}`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OAuthError(`the issuer's ${key} is not a URL`);
  }
  const local = url.hostname === "localhost" || url.hostname === "127.0.0.1";
  if (url.protocol !== "https:" && !(url.protocol === "http:" && local)) {
    throw new OAuthError(`the issuer's ${key} is not https`);
  }
  return value;
}

/** The discovery document, checked: its issuer must be the one asked (OIDC Discovery 4.3). */
export function parseDiscovery(json: unknown, issuer: string): Discovery {
  if (typeof json !== "object" || json === null) throw new OAuthError("the issuer's configuration is not JSON");
  const doc = json as Json;
  if (typeof doc.issuer !== "string" || trimSlash(doc.issuer) !== trimSlash(issuer)) {
    throw new OAuthError(`the issuer's configuration names another issuer (${String(doc.issuer)})`);
  }
  const discovery: Discovery = {
    issuer: doc.issuer,
    authorizationEndpoint: endpointUrl(doc, "authorization_endpoint"),
    tokenEndpoint: endpointUrl(doc, "token_endpoint"),
  };
  const scopes = doc.scopes_supported;
  if (Array.isArray(scopes)) discovery.scopesSupported = scopes.filter((s): s is string => typeof s === "string");
  return discovery;
}

/** offline_access (a refresh token) only when the issuer lists it: many refuse unknown scopes. */
export function scopeFor(discovery: Discovery): string {
  return discovery.scopesSupported?.includes(OFFLINE_SCOPE) ? `${DEFAULT_SCOPE} ${OFFLINE_SCOPE}` : DEFAULT_SCOPE;
}

export async function discover(issuer: string, fetch: Fetch): Promise<Discovery> {
  let response: Response;
  try {
    response = await fetch(discoveryUrl(issuer), { headers: { accept: "application/json" } });
  } catch (error) {
    throw new OAuthError(`the issuer is unreachable (${(error as Error).message})`);
  }
  if (!response.ok) throw new OAuthError(`the issuer's configuration answered HTTP ${response.status}`);
  return parseDiscovery(await response.json().catch(() => null), issuer);
}

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** What of WebCrypto PKCE needs (crypto in browsers and Node 20). */
export interface CryptoLike {
  getRandomValues<T extends Uint8Array<ArrayBuffer>>(array: T): T;
  subtle: { digest(algorithm: "SHA-256", data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> };
}

/** 32 random bytes as base64url: 43 characters, inside RFC 7636's 43..128. */
export function randomString(crypto: CryptoLike): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

export async function challengeOf(verifier: string, crypto: CryptoLike): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

export interface Pkce {
  verifier: string;
  challenge: string;
}

export async function createPkce(crypto: CryptoLike): Promise<Pkce> {
  const verifier = randomString(crypto);
  return { verifier, challenge: await challengeOf(verifier, crypto) };
}

export interface AuthorizationRequest {
  authorizationEndpoint: string;
  clientId: string;
  redirectUri: string;
  state: string;
  challenge: string;
  scope?: string;
}

export function authorizationUrl(request: AuthorizationRequest): string {
  const url = new URL(request.authorizationEndpoint);
  const params: Record<string, string> = {
    response_type: "code",
    client_id: request.clientId,
    redirect_uri: request.redirectUri,
    scope: request.scope ?? DEFAULT_SCOPE,
    state: request.state,
    code_challenge: request.challenge,
    code_challenge_method: "S256",
  };
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.toString();
}

/** Whether a URL is the issuer's answer (code or error) rather than the start of a sign-in. */
export function isCallback(search: string): boolean {
  const params = new URLSearchParams(search);
  return params.has("code") || params.has("error");
}

/** The code of the issuer's redirect, after checking it answers THIS sign-in (its state). */
export function readCallback(search: string, expectedState: string | null): string {
  const params = new URLSearchParams(search);
  const error = params.get("error");
  if (error !== null) {
    const description = params.get("error_description");
    throw new OAuthError(`the issuer refused the sign-in: ${error}${description ? ` (${description})` : ""}`);
  }
  if (expectedState === null || params.get("state") !== expectedState) {
    throw new OAuthError("the sign-in answer does not match this sign-in (state); start again");
  }
  const code = params.get("code");
  if (!code) throw new OAuthError("the issuer's answer has no code");
  return code;
}

export interface TokenExchange {
  tokenEndpoint: string;
  clientId: string;
  redirectUri: string;
  code: string;
  verifier: string;
}

export interface TokenRequest {
  url: string;
  init: RequestInit;
}

function formPost(url: string, fields: Record<string, string>): TokenRequest {
  return {
    url,
    init: {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
      body: new URLSearchParams(fields).toString(),
    },
  };
}

/** The token request of a public client (no secret; the verifier proves the caller). */
export function tokenRequest(exchange: TokenExchange): TokenRequest {
  return formPost(exchange.tokenEndpoint, {
    grant_type: "authorization_code",
    code: exchange.code,
    redirect_uri: exchange.redirectUri,
    client_id: exchange.clientId,
    code_verifier: exchange.verifier,
  });
}

export interface RefreshGrant {
  tokenEndpoint: string;
  clientId: string;
  refreshToken: string;
}

/** The refresh request of a public client (RFC 6749 section 6). */
export function refreshRequest(grant: RefreshGrant): TokenRequest {
  return formPost(grant.tokenEndpoint, {
    grant_type: "refresh_token",
    client_id: grant.clientId,
    refresh_token: grant.refreshToken,
  });
}

/** An OAuth error answer of the token endpoint; `code` is its `error` (e.g. invalid_grant). */
export class TokenRefusedError extends OAuthError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "TokenRefusedError";
  }
}

/** The token endpoint's answer; `what` names the grant in a refusal ("the code", "the refresh"). */
export function parseTokenResponse(status: number, json: unknown, what = "the code"): Token {
  const doc: Json = typeof json === "object" && json !== null ? (json as Json) : {};
  if (typeof doc.error === "string") {
    const description = typeof doc.error_description === "string" ? ` (${doc.error_description})` : "";
    throw new TokenRefusedError(doc.error, `the issuer refused ${what}: ${doc.error}${description}`);
  }
  if (status < 200 || status >= 300) throw new OAuthError(`the token endpoint answered HTTP ${status}`);
  if (typeof doc.access_token !== "string" || doc.access_token === "") {
    throw new OAuthError("the token endpoint's answer has no access_token");
  }
  if (typeof doc.token_type === "string" && doc.token_type.toLowerCase() !== "bearer") {
    throw new OAuthError(`the token is not a bearer token (${doc.token_type})`);
  }
  const token: Token = { accessToken: doc.access_token };
  if (typeof doc.refresh_token === "string" && doc.refresh_token !== "") token.refreshToken = doc.refresh_token;
  if (typeof doc.expires_in === "number" && doc.expires_in > 0) token.expiresIn = doc.expires_in;
  return token;
}

export async function exchangeCode(exchange: TokenExchange, fetch: Fetch): Promise<Token> {
  const { url, init } = tokenRequest(exchange);
  let response: Response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new OAuthError(`the token endpoint is unreachable (${(error as Error).message})`);
  }
  return parseTokenResponse(response.status, await response.json().catch(() => null));
}

/** What the sign-in dialog sends the task pane (Office.context.ui.messageParent: a string). */
export type SigninMessage =
  | { ok: true; token: string; refreshToken?: string; expiresIn?: number }
  | { ok: false; error: string };

export function signinMessageOf(token: Token): SigninMessage {
  const message: SigninMessage = { ok: true, token: token.accessToken };
  if (token.refreshToken !== undefined) message.refreshToken = token.refreshToken;
  if (token.expiresIn !== undefined) message.expiresIn = token.expiresIn;
  return message;
}

/** The token of a successful message (optional fields only when present). */
export function tokenOfMessage(message: { token: string; refreshToken?: string; expiresIn?: number }): Token {
  const token: Token = { accessToken: message.token };
  if (message.refreshToken !== undefined) token.refreshToken = message.refreshToken;
  if (message.expiresIn !== undefined) token.expiresIn = message.expiresIn;
  return token;
}

/** Reads the dialog's message; one without refreshToken / expiresIn (an older page) still parses. */
export function parseSigninMessage(message: string): SigninMessage {
  try {
    const json: unknown = JSON.parse(message);
    if (typeof json === "object" && json !== null) {
      const doc = json as Json;
      if (doc.ok === true && typeof doc.token === "string" && doc.token !== "") {
        const parsed: SigninMessage = { ok: true, token: doc.token };
        if (typeof doc.refreshToken === "string" && doc.refreshToken !== "") parsed.refreshToken = doc.refreshToken;
        if (typeof doc.expiresIn === "number" && doc.expiresIn > 0) parsed.expiresIn = doc.expiresIn;
        return parsed;
      }
      if (doc.ok === false && typeof doc.error === "string") return { ok: false, error: doc.error };
    }
  } catch {
    // fall through
  }
  return { ok: false, error: "the sign-in dialog sent an unreadable answer" };
}
