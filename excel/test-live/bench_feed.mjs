#!/usr/bin/env node
// The add-in's latency benchmark driver (benchmarks/excel_feed.py runs it): the BUILT add-in's
// =AEROGRID.GRID in Node against a live endpoint, with a stand-in for Excel's
// StreamingInvocation that measures every result instead of rendering it.
//
// Runs the single-file bundle dist/addin/functions.js, the file Excel loads (common.mjs).
// Every result (one spilled matrix: header row + one row per key) is compared
// with the previous one: each row whose --sent-column changed is a row update the cell now
// shows, and its latency is now − that value (the producer's wall clock, same machine).
//
// Protocol on stdio (one JSON line each on stdout):
//   {"event":"ready", ...}   once a result holds --expect-rows rows (the preload is shown)
//   stdin "start\n"          measuring starts: counters, CPU and bytes are reset
//   stdin "stop\n" or EOF    the formula is cancelled as Excel would, and
//   {"event":"result", ...}  is printed: results, latency percentiles, bytes, CPU, RSS
// --timeout S ends the process (with a result) if the parent never says stop.
//
// Usage: node test-live/bench_feed.mjs --base-url URL --app A --grid G
//          [--options "interval=250"] [--columns "price,sent_at"] [--sent-column sent_at]
//          [--sent-unit s|ms|ns] [--expect-rows 10000] [--timeout 600]
import { createInterface } from "node:readline";
import { loadAddIn, parseCli, usageError } from "./common.mjs";

const fail = (message) => usageError("bench_feed", message);

const values = parseCli(
  "bench_feed",
  {
    "base-url": { type: "string" },
    app: { type: "string" },
    grid: { type: "string" },
    columns: { type: "string", default: "" },
    options: { type: "string", default: "interval=250" },
    "sent-column": { type: "string", default: "sent_at" },
    "sent-unit": { type: "string", default: "s" },
    "expect-rows": { type: "string", default: "1" },
    timeout: { type: "string", default: "600" },
    token: { type: "string" },
  },
  ["base-url", "app", "grid"],
);
const toMs = { s: 1000, ms: 1, ns: 1e-6 }[values["sent-unit"]];
if (toMs === undefined) fail(`--sent-unit must be s, ms or ns, got ${values["sent-unit"]}`);
const expectRows = Number(values["expect-rows"]);
const timeoutS = Number(values.timeout);

// -- the add-in's code: the single-file bundle Excel loads ------------------------------------
const source = "dist/addin/functions.js";
const { configure, FUNCTIONS, openStreams } = loadAddIn();

// -- wire bytes: every response body byte the transport reads --------------------------------
let wireBytes = 0;
const countingFetch = async (input, init) => {
  const response = await globalThis.fetch(input, init);
  if (response.body === null) return response;
  const counted = response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        wireBytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }),
  );
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers });
};
configure({ baseUrl: values["base-url"], token: values.token ?? process.env.AEROGRID_TOKEN, fetch: countingFetch });

// -- measurement state -----------------------------------------------------------------------
let measuring = false;
let ready = false;
let sentIndex = -1;
/** row key -> the sent value of the previous result */
const previous = new Map();
let latencies = [];
let results = 0;
let rowsChanged = 0;
let jsonChars = 0;
let jsonMs = 0;
let scanMs = 0;
let maxRows = 0;
let gapMax = 0;
let lastResultAt = 0;
let errors = [];
let cpuStart = process.cpuUsage();
let wallStart = performance.now();
let wireStart = 0;
let rssPeak = 0;
const rssTimer = setInterval(() => {
  if (measuring) rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
}, 250);

function emit(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

const invocation = {
  onCanceled: undefined,
  setResult(matrix) {
    const now = Date.now(); // the wall clock the producer stamped with
    const t0 = performance.now();
    // What Excel's runtime would serialize and send to the host for this result.
    const chars = JSON.stringify(matrix).length;
    const t1 = performance.now();
    if (!Array.isArray(matrix) || matrix.length < 2 || !Array.isArray(matrix[0])) {
      if (measuring) errors.push(String(matrix?.[0]?.[0] ?? matrix).slice(0, 300));
      else process.stderr.write(`bench_feed: ${JSON.stringify(matrix).slice(0, 300)}\n`);
      return;
    }
    if (sentIndex < 0) {
      sentIndex = matrix[0].indexOf(values["sent-column"]);
      if (sentIndex < 0) fail(`no column ${values["sent-column"]} in the header ${JSON.stringify(matrix[0])}`);
    }
    let changed = 0;
    for (let i = 1; i < matrix.length; i++) {
      const row = matrix[i];
      const sent = row[sentIndex];
      if (previous.get(row[0]) !== sent) {
        previous.set(row[0], sent);
        changed++;
        if (measuring && typeof sent === "number") latencies.push(now - sent * toMs);
      }
    }
    const t2 = performance.now();
    if (measuring) {
      results++;
      rowsChanged += changed;
      jsonChars += chars;
      jsonMs += t1 - t0;
      scanMs += t2 - t1;
      maxRows = Math.max(maxRows, matrix.length - 1);
      if (lastResultAt) gapMax = Math.max(gapMax, t0 - lastResultAt);
      lastResultAt = t0;
    }
    if (!ready && matrix.length - 1 >= expectRows) {
      ready = true;
      emit({ event: "ready", rows: matrix.length - 1, json_chars: chars, source });
    }
  },
};

function start() {
  latencies = [];
  results = rowsChanged = jsonChars = jsonMs = scanMs = maxRows = gapMax = lastResultAt = 0;
  errors = [];
  rssPeak = process.memoryUsage().rss;
  wireStart = wireBytes;
  cpuStart = process.cpuUsage();
  wallStart = performance.now();
  measuring = true;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return Math.round(10 * sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]) / 10;
}

let finished = false;
function finish(reason) {
  if (finished) return;
  finished = true;
  const seconds = (performance.now() - wallStart) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const wasMeasuring = measuring;
  measuring = false;
  clearInterval(rssTimer);
  clearTimeout(deadline);
  invocation.onCanceled?.(); // as Excel does when the cell is edited or deleted
  const sorted = Float64Array.from(latencies).sort();
  const round1 = (x) => Math.round(10 * x) / 10;
  const out = {
    event: "result",
    reason,
    source,
    options: values.options,
    measured: wasMeasuring,
    seconds: round1(seconds),
    results,
    results_per_s: round1(results / Math.max(seconds, 1e-9)),
    rows_updated: rowsChanged,
    rows_updated_per_s: round1(rowsChanged / Math.max(seconds, 1e-9)),
    latency_ms: {
      samples: sorted.length,
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.length ? round1(sorted[sorted.length - 1]) : null,
      min: sorted.length ? round1(sorted[0]) : null,
    },
    max_gap_between_results_ms: round1(gapMax),
    rows_per_result: maxRows,
    json_bytes_per_result: results ? Math.round(jsonChars / results) : null,
    json_stringify_ms_per_result: results ? Math.round((100 * jsonMs) / results) / 100 : null,
    harness_scan_ms_per_result: results ? Math.round((100 * scanMs) / results) / 100 : null,
    wire_bytes: wireBytes - wireStart,
    wire_bytes_per_s: Math.round((wireBytes - wireStart) / Math.max(seconds, 1e-9)),
    cpu_percent: round1((100 * (cpu.user + cpu.system)) / 1e6 / Math.max(seconds, 1e-9)),
    cpu_user_s: round1(cpu.user / 1e6),
    cpu_system_s: round1(cpu.system / 1e6),
    rss_mib_peak: round1(Math.max(rssPeak, process.memoryUsage().rss) / 1048576),
    heap_used_mib: round1(process.memoryUsage().heapUsed / 1048576),
    errors: errors.slice(0, 5),
    open_streams_after_cancel: openStreams(),
  };
  process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));
}

const deadline = setTimeout(() => finish("timeout"), timeoutS * 1000);
const stdin = createInterface({ input: process.stdin });
stdin.on("line", (line) => {
  const command = line.trim();
  if (command === "start") start();
  else if (command === "stop") finish("stop");
});
stdin.on("close", () => finish("stdin closed"));
process.on("SIGTERM", () => finish("SIGTERM"));

FUNCTIONS.GRID(values.app, values.grid, values.columns, values.options, invocation);
