#!/usr/bin/env node
// Runs the BUILT add-in in Node, the very file Excel loads (dist/addin/functions.js, imported
// for its side effect of publishing globalThis.AeroGrid): =AEROGRID.GRID (or VALUE, APPS)
// against a live endpoint, with a stand-in for Excel's StreamingInvocation that records
// every setResult (Excel cannot run here). Stops when the spilled matrix equals --expect (JSON), or after
// --duration seconds, then cancels the formula as Excel would and prints ONE JSON line:
//
//   {"matrix": [[...], ...], "results": N, "matched": true|false, "open_streams": K}
//
// `open_streams` is the number of grid streams still open after the cancel (should be 0).
// Exit status: 0 when matched (or no --expect was given); 1 when --expect never matched;
// 2 on bad arguments.
//
// Usage: node test-live/grid_live.mjs --base-url URL --app A --grid G
//          [--columns "a,b"] [--options "order=key; interval=100"] [--function grid|value|apps]
//          [--row-key K --column C] [--duration S] [--expect JSON] [--token T]
import { isDeepStrictEqual } from "node:util";
import { loadAddIn, parseCli, usageError } from "./common.mjs";

const { configure, FUNCTIONS, openStreams } = loadAddIn();
const { GRID: grid, VALUE: value, APPS: apps } = FUNCTIONS;
const fail = (message) => usageError("grid_live", message);

const values = parseCli(
  "grid_live",
  {
    "base-url": { type: "string" },
    app: { type: "string" },
    grid: { type: "string" },
    columns: { type: "string" },
    options: { type: "string" },
    function: { type: "string", default: "grid" },
    "row-key": { type: "string" },
    column: { type: "string" },
    duration: { type: "string", default: "30" },
    expect: { type: "string" },
    token: { type: "string" },
  },
  ["base-url", "app", "grid"],
);
const duration = Number(values.duration);
if (!Number.isFinite(duration) || duration <= 0) fail(`--duration must be a positive number of seconds`);
let expected;
if (values.expect !== undefined) {
  try {
    expected = JSON.parse(values.expect);
  } catch (e) {
    fail(`--expect is not JSON: ${e.message}`);
  }
}

configure({ baseUrl: values["base-url"], token: values.token ?? process.env.AEROGRID_TOKEN });

// The stand-in for Excel's StreamingInvocation.
const results = [];
let finish;
const finished = new Promise((resolve) => (finish = resolve));
const invocation = {
  onCanceled: undefined,
  setResult(result) {
    results.push(result);
    if (expected !== undefined && isDeepStrictEqual(result, expected)) finish(true);
  },
};

if (values.function === "grid") {
  grid(values.app, values.grid, values.columns ?? null, values.options ?? null, invocation);
} else if (values.function === "value") {
  if (values["row-key"] === undefined || values.column === undefined) fail("--function value needs --row-key and --column");
  value(values.app, values.grid, values["row-key"], values.column, invocation);
} else if (values.function === "apps") {
  apps(invocation); // --app and --grid are still required, but unused
} else {
  fail(`--function must be grid, value or apps, got ${values.function}`);
}

const timer = setTimeout(() => finish(false), duration * 1000);
const matched = await finished;
clearTimeout(timer);
invocation.onCanceled?.(); // as Excel does when the cell is edited or deleted
const out = {
  matrix: results.at(-1) ?? null,
  results: results.length,
  matched,
  open_streams: openStreams(),
};
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(expected === undefined || matched ? 0 : 1));
