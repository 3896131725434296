// The endpoint URL, on its own so the task pane can validate it without bundling the
// transport (connect-web lives once, in functions.js).

/** The local endpoint of `aerogrid dev` / `aerogrid run`. */
export const DEFAULT_BASE_URL = "http://localhost:50051";

/** An http(s) base URL without its trailing slash; throws a readable Error otherwise. */
export function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new Error(`not a URL: "${raw}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`the endpoint must be http:// or https://, got "${raw}"`);
  }
  return url.toString().replace(/\/+$/, "");
}
