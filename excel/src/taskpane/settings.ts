// The task pane's settings: ONE endpoint URL, a pasted token, an optional OIDC issuer and
// client id for sign-in. Validated here, persisted in OfficeRuntime.storage (shared with the
// functions' runtime) or else localStorage. The token is stored like the user's other
// add-in data: it is what the user pasted or signed in for, on their own machine.
import { DEFAULT_BASE_URL, normalizeBaseUrl } from "../core/url.js";
import type { AsyncStorageLike } from "./office.js";

export interface Settings {
  endpoint: string;
  token: string;
  issuer: string;
  clientId: string;
}

export type SettingsErrors = Partial<Record<keyof Settings, string>>;

export type Validated = { ok: true; settings: Settings } | { ok: false; errors: SettingsErrors };

export const STORAGE_KEY = "aerogrid.settings";

/** The page's `endpoint` query parameter (the manifest sets it), else the local endpoint. */
export function pageEndpoint(search: string): string | undefined {
  const value = new URLSearchParams(search).get("endpoint")?.trim();
  return value ? value : undefined;
}

export function defaultSettings(search: string): Settings {
  return { endpoint: pageEndpoint(search) ?? DEFAULT_BASE_URL, token: "", issuer: "", clientId: "" };
}

function isLoopback(url: URL): boolean {
  return url.hostname === "localhost" || url.hostname === "127.0.0.1" || url.hostname === "[::1]";
}

/** An issuer must be https (http only on this machine): tokens travel to it. */
export function normalizeIssuer(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new Error(`not a URL: "${raw}"`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url))) {
    throw new Error("the issuer must be https:// (http:// only for localhost)");
  }
  return url.toString().replace(/\/+$/, "");
}

/** A pasted "Bearer eyJ…" is the token "eyJ…". */
export function normalizeToken(raw: string): string {
  return raw.trim().replace(/^bearer\s+/i, "");
}

export function validateSettings(input: Settings): Validated {
  const errors: SettingsErrors = {};
  const settings: Settings = {
    endpoint: input.endpoint.trim(),
    token: normalizeToken(input.token),
    issuer: input.issuer.trim(),
    clientId: input.clientId.trim(),
  };
  try {
    settings.endpoint = normalizeBaseUrl(settings.endpoint);
  } catch (error) {
    errors.endpoint = (error as Error).message;
  }
  if (/\s/.test(settings.token)) errors.token = "the token must not contain spaces";
  if (settings.issuer !== "") {
    try {
      settings.issuer = normalizeIssuer(settings.issuer);
    } catch (error) {
      errors.issuer = (error as Error).message;
    }
    if (settings.clientId === "") errors.clientId = "sign-in needs the client id registered at the issuer";
  }
  return Object.keys(errors).length === 0 ? { ok: true, settings } : { ok: false, errors };
}

/** What is stored: the settings and the page endpoint they were saved under. */
interface Stored extends Settings {
  page: string | null;
}

const text = (value: unknown): string => (typeof value === "string" ? value : "");

/**
 * The stored settings over the defaults; but when the manifest now points the page at
 * another endpoint than when they were saved (a re-generated manifest), that endpoint wins
 * and the old token is dropped, since it belongs to the old endpoint.
 */
export function mergeStored(defaults: Settings, raw: string | null, page: string | undefined): Settings {
  if (raw === null) return defaults;
  let stored: Partial<Record<keyof Stored, unknown>>;
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed !== "object" || parsed === null) return defaults;
    stored = parsed as Partial<Record<keyof Stored, unknown>>;
  } catch {
    return defaults;
  }
  const settings: Settings = {
    endpoint: text(stored.endpoint) || defaults.endpoint,
    token: text(stored.token),
    issuer: text(stored.issuer),
    clientId: text(stored.clientId),
  };
  const savedUnder = typeof stored.page === "string" ? stored.page : undefined;
  if (page !== undefined && savedUnder !== page) return { ...settings, endpoint: defaults.endpoint, token: "" };
  return settings;
}

export interface SettingsStore {
  load(): Promise<Settings>;
  save(settings: Settings): Promise<void>;
}

/** localStorage behind the same async interface as OfficeRuntime.storage. */
export function fromWebStorage(storage: Pick<Storage, "getItem" | "setItem">): AsyncStorageLike {
  return {
    getItem: async (key) => storage.getItem(key),
    setItem: async (key, value) => storage.setItem(key, value),
  };
}

export function settingsStore(storage: AsyncStorageLike, search: string): SettingsStore {
  const page = pageEndpoint(search);
  return {
    load: async () => {
      let raw: string | null = null;
      try {
        raw = await storage.getItem(STORAGE_KEY);
      } catch {
        // unreadable storage: start from the defaults
      }
      return mergeStored(defaultSettings(search), raw, page);
    },
    save: async (settings) => {
      const stored: Stored = { ...settings, page: page ?? null };
      await storage.setItem(STORAGE_KEY, JSON.stringify(stored));
    },
  };
}
