// The task pane's settings: defaults from the page URL, validation, storage.
import { describe, expect, it } from "vitest";
import {
  defaultSettings,
  fromWebStorage,
  mergeStored,
  normalizeToken,
  settingsStore,
  STORAGE_KEY,
  validateSettings,
  type Settings,
} from "../src/taskpane/settings.js";

const base: Settings = { endpoint: "http://localhost:50051", token: "", issuer: "", clientId: "" };

function memoryStorage() {
  const items = new Map<string, string>();
  return {
    items,
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => void items.set(key, value),
  };
}

describe("defaults", () => {
  it("take the endpoint from the page's query, else the local endpoint", () => {
    expect(defaultSettings("?endpoint=https%3A%2F%2Fgrid.example.com").endpoint).toBe("https://grid.example.com");
    expect(defaultSettings("").endpoint).toBe("http://localhost:50051");
    expect(defaultSettings("?endpoint=").endpoint).toBe("http://localhost:50051");
  });
});

describe("validateSettings", () => {
  it("normalizes the endpoint and the token", () => {
    const result = validateSettings({ ...base, endpoint: " https://grid.example.com/ ", token: " Bearer abc.def " });
    expect(result).toEqual({ ok: true, settings: { ...base, endpoint: "https://grid.example.com", token: "abc.def" } });
  });

  it("names each bad field", () => {
    const result = validateSettings({ endpoint: "localhost:50051", token: "a b", issuer: "http://idp.example.com", clientId: "" });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.endpoint).toMatch(/http/);
    expect(result.errors.token).toMatch(/spaces/);
    expect(result.errors.issuer).toMatch(/https/);
    expect(result.errors.clientId).toMatch(/client id/);
  });

  it("accepts an issuer over https, or http on localhost", () => {
    expect(validateSettings({ ...base, issuer: "https://idp.example.com/realms/a/", clientId: "excel" })).toEqual({
      ok: true,
      settings: { ...base, issuer: "https://idp.example.com/realms/a", clientId: "excel" },
    });
    expect(validateSettings({ ...base, issuer: "http://localhost:8080", clientId: "excel" }).ok).toBe(true);
  });

  it("strips a pasted Bearer prefix only", () => {
    expect(normalizeToken("bearer  xyz")).toBe("xyz");
    expect(normalizeToken("xyz")).toBe("xyz");
  });
});

describe("stored settings", () => {
  const saved = (page: string | null, endpoint = "https://saved.example.com") =>
    JSON.stringify({ endpoint, token: "t", issuer: "", clientId: "", page });

  it("win over the defaults when saved under the same page endpoint", () => {
    const defaults = defaultSettings("?endpoint=http://localhost:50051");
    expect(mergeStored(defaults, saved("http://localhost:50051"), "http://localhost:50051")).toEqual({
      ...base,
      endpoint: "https://saved.example.com",
      token: "t",
    });
  });

  it("give way to a manifest that now names another endpoint, dropping the old token", () => {
    const defaults = defaultSettings("?endpoint=https://new.example.com");
    expect(mergeStored(defaults, saved("http://localhost:50051"), "https://new.example.com")).toEqual({
      ...base,
      endpoint: "https://new.example.com",
    });
  });

  it("are ignored when unreadable", () => {
    expect(mergeStored(base, "{not json", undefined)).toEqual(base);
    expect(mergeStored(base, "42", undefined)).toEqual(base);
    expect(mergeStored(base, null, undefined)).toEqual(base);
  });

  it("round-trip through a store", async () => {
    const storage = memoryStorage();
    const store = settingsStore(fromWebStorage(storage), "?endpoint=http://localhost:50051");
    expect(await store.load()).toEqual(base);
    await store.save({ ...base, token: "secret", issuer: "https://idp.example.com", clientId: "excel" });
    expect(JSON.parse(storage.items.get(STORAGE_KEY) ?? "")).toMatchObject({ page: "http://localhost:50051" });
    expect(await store.load()).toEqual({ ...base, token: "secret", issuer: "https://idp.example.com", clientId: "excel" });
  });

  it("load the defaults when the storage fails", async () => {
    const failing = { getItem: () => Promise.reject(new Error("denied")), setItem: () => Promise.resolve() };
    expect(await settingsStore(failing, "").load()).toEqual(base);
  });
});
