// Keeps a signed-in access token fresh: the refresh_token grant shortly before the token
// expires, the new access token handed on, the refresh token rotated when the issuer sends a
// new one. On failure it reports once and stops: no loop against the issuer (one retry for
// a network or server failure, none for a refusal such as invalid_grant).
import { OAuthError, parseTokenResponse, refreshRequest, type Token } from "./oauth.js";

export interface RefreshOptions {
  /** From the issuer's discovery document. */
  tokenEndpoint: string;
  clientId: string;
  refreshToken: string;
  /** The current access token's lifetime, seconds. */
  expiresIn: number;
  fetch: typeof globalThis.fetch;
  onToken(accessToken: string): void;
  /** Called once; the refresher has stopped. */
  onError(error: OAuthError): void;
}

export interface Refresher {
  stop(): void;
}

export const EARLY_MS = 60_000;
export const MIN_DELAY_MS = 30_000;
export const RETRY_MS = 30_000;
// setTimeout fires at once past 2^31 - 1 ms (about 24.8 days).
const MAX_DELAY_MS = 2 ** 31 - 1;
// An issuer handing out second-long tokens is still not asked more than once a second.
const FLOOR_MS = 1000;

/**
 * When to refresh a token that lives `expiresIn` seconds: a minute early but not before
 * 30 s, unless the token is so short-lived that 30 s is too late (then at 80% of its life).
 */
export function refreshDelayMs(expiresIn: number): number {
  const lifetime = expiresIn * 1000;
  const delay = Math.max(lifetime - EARLY_MS, Math.min(MIN_DELAY_MS, 0.8 * lifetime));
  return Math.min(MAX_DELAY_MS, Math.max(FLOOR_MS, Math.round(delay)));
}

export function startRefresher(options: RefreshOptions): Refresher {
  let refreshToken = options.refreshToken;
  // The last lifetime the issuer stated: the guess for an answer without expires_in.
  let lifetime = options.expiresIn;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const schedule = (ms: number, retried: boolean): void => {
    timer = setTimeout(() => void attempt(retried), ms);
  };

  const fail = (error: OAuthError, transient: boolean, retried: boolean): void => {
    if (transient && !retried) {
      schedule(RETRY_MS, true);
      return;
    }
    stopped = true;
    options.onError(error);
  };

  async function attempt(retried: boolean): Promise<void> {
    timer = undefined;
    const { url, init } = refreshRequest({ tokenEndpoint: options.tokenEndpoint, clientId: options.clientId, refreshToken });
    let response: Response;
    try {
      response = await options.fetch(url, init);
    } catch (error) {
      if (!stopped) fail(new OAuthError(`the token endpoint is unreachable (${(error as Error).message})`), true, retried);
      return;
    }
    const json: unknown = await response.json().catch(() => null);
    if (stopped) return;
    let token: Token;
    try {
      token = parseTokenResponse(response.status, json, "the refresh");
    } catch (error) {
      // The issuer's own trouble (5xx) may pass like the network's; its refusals do not.
      const reason = error instanceof OAuthError ? error : new OAuthError(String(error));
      fail(reason, response.status >= 500, retried);
      return;
    }
    if (token.refreshToken !== undefined) refreshToken = token.refreshToken;
    if (token.expiresIn !== undefined) lifetime = token.expiresIn;
    schedule(refreshDelayMs(lifetime), false);
    options.onToken(token.accessToken);
  }

  schedule(refreshDelayMs(lifetime), false);
  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
