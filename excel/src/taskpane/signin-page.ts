// The sign-in dialog's page (signin.html), both ends of the redirect: opened by the task
// pane with ?issuer=…&client_id=…, it discovers the issuer, keeps a fresh state and PKCE
// verifier in sessionStorage and goes to the issuer; the issuer sends it back with
// ?code=…&state=…, and it exchanges the code and hands the token (and the refresh token,
// when the issuer grants one) to the task pane.
// The browser bits are injected, so both ends are tested in Node.
import {
  authorizationUrl,
  createPkce,
  discover,
  exchangeCode,
  isCallback,
  OAuthError,
  randomString,
  readCallback,
  scopeFor,
  signinMessageOf,
  type CryptoLike,
  type SigninMessage,
} from "./oauth.js";

export const PENDING_KEY = "aerogrid.signin";

export interface SigninPageDeps {
  /** The page's own URL. */
  href: string;
  storage: Pick<Storage, "getItem" | "setItem" | "removeItem">;
  fetch: typeof globalThis.fetch;
  crypto: CryptoLike;
  navigate(url: string): void;
  /** Office.context.ui.messageParent */
  reply(message: string): void;
}

/** Where the issuer sends the user back: this page, without its query. */
export function redirectUriOf(href: string): string {
  const url = new URL(href);
  return `${url.origin}${url.pathname}`;
}

/** The dialog URL the task pane opens. */
export function signinPageUrl(pageUrl: string, issuer: string, clientId: string): string {
  const url = new URL(pageUrl);
  url.search = new URLSearchParams({ issuer, client_id: clientId }).toString();
  return url.toString();
}

interface Pending {
  state: string;
  verifier: string;
  tokenEndpoint: string;
  clientId: string;
  redirectUri: string;
}

function readPending(raw: string | null): Pending | null {
  if (raw === null) return null;
  try {
    const doc = JSON.parse(raw) as Partial<Record<keyof Pending, unknown>>;
    const fields = [doc.state, doc.verifier, doc.tokenEndpoint, doc.clientId, doc.redirectUri];
    return fields.every((f) => typeof f === "string") ? (doc as Pending) : null;
  } catch {
    return null;
  }
}

export async function runSigninPage(deps: SigninPageDeps): Promise<void> {
  const url = new URL(deps.href);
  const send = (message: SigninMessage): void => deps.reply(JSON.stringify(message));
  try {
    if (isCallback(url.search)) {
      const pending = readPending(deps.storage.getItem(PENDING_KEY));
      deps.storage.removeItem(PENDING_KEY); // one answer per sign-in
      const code = readCallback(url.search, pending?.state ?? null);
      if (pending === null) throw new OAuthError("this sign-in was not started here; start again");
      const token = await exchangeCode({ ...pending, code }, deps.fetch);
      send(signinMessageOf(token));
      return;
    }
    const issuer = url.searchParams.get("issuer");
    const clientId = url.searchParams.get("client_id");
    if (!issuer || !clientId) throw new OAuthError("sign-in needs an issuer and a client id");
    const discovery = await discover(issuer, deps.fetch);
    const pkce = await createPkce(deps.crypto);
    const pending: Pending = {
      state: randomString(deps.crypto),
      verifier: pkce.verifier,
      tokenEndpoint: discovery.tokenEndpoint,
      clientId,
      redirectUri: redirectUriOf(deps.href),
    };
    deps.storage.setItem(PENDING_KEY, JSON.stringify(pending));
    deps.navigate(
      authorizationUrl({
        authorizationEndpoint: discovery.authorizationEndpoint,
        clientId,
        redirectUri: pending.redirectUri,
        state: pending.state,
        challenge: pkce.challenge,
        scope: scopeFor(discovery),
      }),
    );
  } catch (error) {
    send({ ok: false, error: error instanceof Error ? error.message : String(error) });
  }
}
