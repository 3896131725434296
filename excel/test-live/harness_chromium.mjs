#!/usr/bin/env node
// Opens the harness page (harness.html: the add-in's own functions.js with a stand-in for
// Excel's invocation, drawn as a sheet) in headless Chromium from the system's packages,
// via puppeteer-core (no browser download), and waits until the page's spilled matrix
// equals --expect (or each of --expect-sequence in turn), or --duration s pass. Then it
// cancels the formula as Excel would, optionally takes a PNG, and prints ONE JSON line:
//
//   {"matrix": [[...]], "table": [["key", "6"], ...], "results": N, "matched": true|false,
//    "state": "ok"|"stale"|"error"|..., "stale_results": K, "last_stale": "key (stale: …)",
//    "status": "...", "open_streams": 0, "browser_pid": P, "errors": [...], "elapsed_s": 1.2,
//    "stale_table": [[...]] (the first stale sheet polled, when one was)}
//
// `matrix` is the last value the function gave setResult; `table` is the text of the
// rendered #matrix cells (without the letters and row numbers), i.e. what a person sees.
// With --expect-sequence, one line {"event": "matched", "index": i, ...} is printed (and
// flushed) as each matrix but the last is reached, so a test can act in between (restart
// the app, produce more orders); `matched` is true only when all were reached in order.
// The browser is always closed, also on errors, timeouts and SIGINT/SIGTERM.
//
// Exit status: 0 matched (or nothing expected); 1 not matched in time; 2 bad arguments;
// 3 the browser or the page failed (the JSON line says why in "error"); 130 stopped by a
// signal (the JSON line is still printed, after the browser closed).
//
// Usage: node test-live/harness_chromium.mjs PAGE_URL [--expect JSON | --expect-sequence JSON]
//          [--duration S] [--screenshot PATH] [--viewport 900x420] [--chromium PATH]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual, parseArgs } from "node:util";
import puppeteer from "puppeteer-core";

const started = Date.now();

function usage(message) {
  process.stderr.write(`harness_chromium: ${message}\n`);
  process.exit(2);
}

let values;
let positionals;
try {
  ({ values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      expect: { type: "string" },
      "expect-sequence": { type: "string" },
      duration: { type: "string", default: "30" },
      screenshot: { type: "string" },
      viewport: { type: "string", default: "900x420" },
      chromium: { type: "string" },
    },
  }));
} catch (e) {
  usage(e.message);
}
if (positionals.length !== 1) usage("give exactly one page URL");
const url = positionals[0];
const duration = Number(values.duration);
if (!Number.isFinite(duration) || duration <= 0) usage("--duration must be a positive number of seconds");
const viewportMatch = /^(\d+)x(\d+)$/.exec(values.viewport);
if (!viewportMatch) usage("--viewport must look like 900x420");
const viewport = { width: Number(viewportMatch[1]), height: Number(viewportMatch[2]) };
if (values.expect !== undefined && values["expect-sequence"] !== undefined) {
  usage("give --expect or --expect-sequence, not both");
}
let sequence = [];
try {
  if (values.expect !== undefined) sequence = [JSON.parse(values.expect)];
  if (values["expect-sequence"] !== undefined) sequence = JSON.parse(values["expect-sequence"]);
} catch (e) {
  usage(`the expectation is not JSON: ${e.message}`);
}
if (!Array.isArray(sequence)) usage("--expect-sequence must be a JSON list of matrices");
// Debian's package puts it at /usr/bin/chromium (scripts/install_chromium.sh).
const executablePath = values.chromium ?? process.env.AEROGRID_CHROMIUM ?? "/usr/bin/chromium";

function emit(line) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(line) + "\n", resolve));
}

// A throwaway profile: nothing of one run (cache, storage) leaks into the next.
const userDataDir = mkdtempSync(join(tmpdir(), "aerogrid-chromium-"));
let browser;
let launching = Promise.resolve();
// What is printed at the end (or when stopped by a signal), filled in as we go.
let out = { url, matrix: null, results: 0, matched: false };
const errors = [];

/** Close the browser, and kill its process group if closing hangs: no chromium may outlive us. */
async function closeBrowser() {
  await launching.catch(() => {}); // a browser still starting is closed too, once it is up
  const current = browser;
  browser = undefined;
  if (current !== undefined) {
    const proc = current.process();
    await Promise.race([current.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    // Puppeteer starts Chromium detached, in its own process group: whatever of that group
    // is left (a hung browser, a helper such as crashpad) goes with it.
    if (proc?.pid !== undefined) {
      try {
        process.kill(-proc.pid, "SIGKILL");
      } catch {
        // ESRCH: the group is already gone
      }
    }
  }
  try {
    // Retried: a helper killed just now may still be writing its last files.
    rmSync(userDataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  } catch (e) {
    errors.push(`could not remove ${userDataDir}: ${e.message}`);
  }
}

let stopping = false;

// Stopped from outside (a test's cleanup, Ctrl-C): close the browser, still say what we know.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    closeBrowser()
      .then(() => emit({ ...out, error: `stopped by ${signal}`, errors }))
      .finally(() => process.exit(130));
  });
}

/** What the page shows now: the harness API's fields and the rendered table's text. */
async function readPage(page) {
  const now = await page.evaluate(() => {
    const h = window.harness;
    const table = Array.from(document.querySelectorAll("#matrix tbody tr"), (tr) =>
      Array.from(tr.querySelectorAll("td"), (td) => td.textContent ?? ""),
    );
    return {
      ready: h !== undefined,
      matrix: h?.matrix ?? null,
      results: h?.results ?? 0,
      state: h?.state ?? "loading",
      stale_results: h?.staleResults ?? 0,
      last_stale: h?.lastStale ?? "",
      last_result_at: h?.lastResultAt ?? 0,
      table,
      status: document.getElementById("status")?.textContent ?? "",
    };
  });
  const { ready, last_result_at, ...shown } = now;
  Object.assign(out, shown); // what a signal handler reports if we are stopped midway
  // The first stale sheet seen (polled, so a stale spell shorter than a poll can be missed;
  // stale_results counts every one): the cells must keep their last values meanwhile.
  if (now.state === "stale" && out.stale_table === undefined) out.stale_table = now.table;
  return now;
}

let code = 0;
try {
  launching = puppeteer.launch({
    executablePath,
    headless: true, // --headless=new
    userDataDir,
    defaultViewport: viewport,
    // Root (containers, CI) cannot use Chromium's sandbox; there is no GPU either.
    args: [...(process.getuid?.() === 0 ? ["--no-sandbox"] : []), "--disable-gpu", "--disable-dev-shm-usage"],
    handleSIGINT: false, // ours above close the browser and exit
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  browser = await launching;
  if (stopping) throw new Error("stopped while starting");
  out.browser_pid = browser.process()?.pid ?? null; // tests check its process group is gone
  const page = await browser.newPage();
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  const response = await page.goto(url, { waitUntil: "load", timeout: duration * 1000 });
  if (response === null || !response.ok()) {
    throw new Error(`GET ${url}: ${response === null ? "no response" : `HTTP ${response.status()}`}`);
  }
  const deadline = started + duration * 1000;
  let reached = 0;
  let now = await readPage(page);
  while (Date.now() < deadline && reached < sequence.length) {
    if (now.ready && now.results > 0 && isDeepStrictEqual(now.matrix, sequence[reached])) {
      reached += 1;
      if (reached < sequence.length) await emit({ event: "matched", index: reached - 1, results: now.results });
      continue;
    }
    await new Promise((r) => setTimeout(r, 50));
    now = await readPage(page);
  }
  const matched = reached === sequence.length;
  if (sequence.length === 0) {
    // Nothing to wait for: show the page for the whole duration (e.g. a screenshot's data).
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
    now = await readPage(page);
  }
  if (values.screenshot !== undefined) await page.screenshot({ path: values.screenshot, type: "png" });
  // Cancel as Excel does when the cell is cleared; the shared stream must close.
  const openStreams = await page.evaluate(() => {
    window.harness?.cancel();
    return globalThis.AeroGrid?.openStreams?.() ?? null;
  });
  out = { ...out, matched, reached, open_streams: openStreams };
  if (!now.ready) errors.push("window.harness was never set (did harness.js load?)");
  code = matched ? 0 : 1;
} catch (e) {
  out = { ...out, error: String(e?.message ?? e) };
  code = 3;
} finally {
  await closeBrowser();
}
if (stopping) await new Promise(() => {}); // the signal handler reports and exits
out.errors = errors;
out.elapsed_s = Math.round((Date.now() - started) / 100) / 10;
await emit(out);
process.exit(code);
