// The harness page's query parameters, parsed without the DOM (unit-tested in Node).
import { parseOptions } from "../core/options.js";

export type HarnessFunction = "grid" | "value" | "apps";

export interface HarnessParams {
  /** The endpoint's base URL; the page's own origin by default (the devkit serves both). */
  endpoint: string;
  app: string;
  grid: string;
  columns: string;
  options: string;
  function: HarnessFunction;
  rowKey: string;
  column: string;
}

/** The names in the URL, in the form's order. */
export const PARAM_NAMES = ["endpoint", "function", "app", "grid", "columns", "options", "row_key", "column"] as const;

/** grid, value or apps (any case); anything else is grid, the common case. */
export function asFunction(text: string): HarnessFunction {
  const fn = text.trim().toLowerCase();
  return fn === "value" || fn === "apps" ? fn : "grid";
}

export function parseParams(search: string, origin: string): HarnessParams {
  const query = new URLSearchParams(search);
  const get = (name: string): string => (query.get(name) ?? "").trim();
  // The endpoint serves the API at its root: drop a trailing slash so URLs join cleanly.
  const endpoint = (get("endpoint") || origin).replace(/\/+$/, "");
  return {
    endpoint,
    app: get("app"),
    grid: get("grid"),
    columns: get("columns"),
    options: get("options"),
    function: asFunction(get("function")),
    rowKey: get("row_key"),
    column: get("column"),
  };
}

/** The query string for a set of parameters (the form's submit), without empty ones. */
export function toSearch(params: HarnessParams): string {
  const query = new URLSearchParams();
  const values: Record<(typeof PARAM_NAMES)[number], string> = {
    endpoint: params.endpoint,
    function: params.function,
    app: params.app,
    grid: params.grid,
    columns: params.columns,
    options: params.options,
    row_key: params.rowKey,
    column: params.column,
  };
  for (const name of PARAM_NAMES) if (values[name] !== "") query.set(name, values[name]);
  return `?${query.toString()}`;
}

/** What is missing before the function can run ("" when nothing is). */
export function missing(params: HarnessParams): string {
  const need: string[] = [];
  if (params.function !== "apps") {
    if (params.app === "") need.push("app");
    if (params.grid === "") need.push("grid");
  }
  if (params.function === "value") {
    if (params.rowKey === "") need.push("row_key");
    if (params.column === "") need.push("column");
  }
  return need.length === 0 ? "" : `set ${need.join(", ")} to run ${params.function.toUpperCase()}`;
}

/** Whether the result's first row is a header: GRID unless header=false, APPS always, VALUE never. */
export function hasHeader(params: HarnessParams): boolean {
  if (params.function === "value") return false;
  if (params.function === "apps") return true;
  try {
    return parseOptions(params.options === "" ? undefined : params.options).header;
  } catch {
    return true; // bad options: the function itself shows the error line
  }
}
