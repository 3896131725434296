#!/usr/bin/env node
// The restart/recovery live test's driver: runs the BUILT add-in bundle (dist/addin/functions.js,
// the one classic script Excel loads, which sets globalThis.AeroGrid) in Node with a stand-in
// for Excel's StreamingInvocation, and waits for a SEQUENCE of spilled matrices, in order.
// A test restarts the app between them; meanwhile the cells must keep their last values with
// the header's first cell reading `key (stale: …; reconnecting)`.
//
// As each matrix but the last is reached it prints (and flushes) one line
//   {"event": "matched", "index": i, "results": N}
// so the test can act (restart the app, produce more orders). At the end, or after
// --duration s, it cancels the formula as Excel would and prints ONE JSON line:
//   {"matrix", "results", "matched", "reached", "stale_results", "stale_between", "stale_headers",
//    "first_stale", "open_streams"}
// `stale_between[i]` counts the stale results seen between reaching matrix i and matrix i+1;
// `first_stale` is the first stale matrix (the last values, under the marked header).
// Exit status: 0 when every matrix was reached; 1 when not in time; 2 on bad arguments.
//
// Usage: node test-live/grid_restart.mjs --base-url URL --app A --grid G --expect-sequence JSON
//          [--columns "a,b"] [--options "interval=100"] [--duration S] [--bundle PATH] [--token T]
import { isDeepStrictEqual } from "node:util";
import { BUNDLE, loadAddIn, parseCli, usageError } from "./common.mjs";

const usage = (message) => usageError("grid_restart", message);

const values = parseCli(
  "grid_restart",
  {
    "base-url": { type: "string" },
    app: { type: "string" },
    grid: { type: "string" },
    columns: { type: "string" },
    options: { type: "string" },
    duration: { type: "string", default: "60" },
    "expect-sequence": { type: "string" },
    bundle: { type: "string" },
    token: { type: "string" },
  },
  ["base-url", "app", "grid", "expect-sequence"],
);
const duration = Number(values.duration);
if (!Number.isFinite(duration) || duration <= 0) usage("--duration must be a positive number of seconds");
let sequence;
try {
  sequence = JSON.parse(values["expect-sequence"]);
} catch (e) {
  usage(`--expect-sequence is not JSON: ${e.message}`);
}
if (!Array.isArray(sequence) || sequence.length === 0) usage("--expect-sequence must be a non-empty JSON list");

let AeroGrid;
try {
  AeroGrid = loadAddIn(values.bundle ?? BUNDLE);
} catch (e) {
  usage(e.message);
}
AeroGrid.configure({ baseUrl: values["base-url"], token: values.token ?? process.env.AEROGRID_TOKEN });

const STALE = /^key \(stale: .*; reconnecting\)$/;
const emit = (line) => new Promise((resolve) => process.stdout.write(JSON.stringify(line) + "\n", resolve));

let results = 0;
let last = null;
let reached = 0;
let staleResults = 0;
let firstStale = null;
const staleBetween = sequence.map(() => 0);
const staleHeaders = new Set();
let finish;
const finished = new Promise((resolve) => (finish = resolve));
const invocation = {
  onCanceled: undefined,
  setResult(result) {
    results += 1;
    last = result;
    const first = Array.isArray(result) && Array.isArray(result[0]) ? result[0][0] : undefined;
    if (typeof first === "string" && STALE.test(first)) {
      staleResults += 1;
      firstStale ??= result;
      staleHeaders.add(first);
      if (reached > 0) staleBetween[reached - 1] += 1;
    }
    if (reached < sequence.length && isDeepStrictEqual(result, sequence[reached])) {
      reached += 1;
      if (reached === sequence.length) finish();
      else void emit({ event: "matched", index: reached - 1, results });
    }
  },
};

AeroGrid.FUNCTIONS.GRID(values.app, values.grid, values.columns ?? null, values.options ?? null, invocation);
const timer = setTimeout(finish, duration * 1000);
await finished;
clearTimeout(timer);
invocation.onCanceled?.(); // as Excel does when the cell is edited or deleted
const matched = reached === sequence.length;
await emit({
  matrix: last,
  results,
  matched,
  reached,
  stale_results: staleResults,
  stale_between: staleBetween.slice(0, -1),
  stale_headers: [...staleHeaders].slice(0, 5),
  first_stale: firstStale,
  open_streams: AeroGrid.openStreams(),
});
process.exit(matched ? 0 : 1);
