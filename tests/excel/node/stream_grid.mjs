#!/usr/bin/env node
// A real browser-style client of an AeroGrid endpoint: connect-es over fetch, the same
// stack the Excel add-in uses. Calls ListApps, then Subscribe, applies the schema,
// snapshot and deltas to a grid, and prints it as ONE JSON line on stdout:
//
//   {"rows": {key: {column: value}}, "seq": N, "updates": K}
//
// `updates` counts the deltas applied after the snapshot. Values: int as a Number
// (a string when beyond 2^53), float as a Number (NaN/Infinity as strings), string,
// bool, decimal as its exact string, timestamp as an ISO-8601 string (UTC, with as
// many fraction digits as needed: 3, 6 or 9), unset as null.
//
// Exit status: 0 with the grid; 1 on an RPC error or timeout; 2 on bad arguments.
// Messages go to stderr. Until the deadline it retries while the server is not up
// yet (connection refused, `unavailable`) or does not list the app yet, so it can be
// started alongside the app it reads.
//
// Usage: node stream_grid.mjs --base-url URL --app A --grid G
//          [--until-rows N] [--updates N] [--timeout-ms T] [--token T]
//          [--protocol connect|grpcweb] [--format binary|json]
//          [--columns c1,c2] [--keys k1,k2]
import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
// The service descriptors are the add-in's own generated code (excel/src/gen, compiled by the
// add-in's build to excel/dist/gen), so client and add-in read one copy of the contract;
// tests/support/node.py builds the add-in when it is missing or stale.
import { CatalogService } from "../../../excel/dist/gen/aerogrid/v1/catalog_pb.js";
import { GridService } from "../../../excel/dist/gen/aerogrid/v1/grid_pb.js";

const USAGE = `usage: node stream_grid.mjs --base-url URL --app A --grid G
  [--until-rows N]   stop once the grid has at least N rows (after the snapshot)
  [--updates N]      stop once N deltas were applied after the snapshot
  [--until-cell K.C=V]  stop once row K's column C reads V (a row's full total, whatever
                     number of commits brought it)
                     (neither: stop when the snapshot is complete; both: when both hold)
  [--timeout-ms T]   give up after T ms in all (default 30000)
  [--token T]        bearer token (default: $AEROGRID_TOKEN, else none)
  [--protocol P]     connect (default) or grpcweb
  [--format F]       binary (default) or json
  [--columns a,b]    only these columns      [--keys k1,k2]  only these rows`;

class UsageError extends Error {}

function parseCli(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        "base-url": { type: "string" },
        app: { type: "string" },
        grid: { type: "string" },
        "until-rows": { type: "string" },
        updates: { type: "string" },
        "until-cell": { type: "string" },
        "timeout-ms": { type: "string", default: "30000" },
        token: { type: "string" },
        protocol: { type: "string", default: "connect" },
        format: { type: "string", default: "binary" },
        columns: { type: "string" },
        keys: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError(e.message);
  }
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  for (const name of ["base-url", "app", "grid"]) {
    if (!values[name]) throw new UsageError(`--${name} is required`);
  }
  const count = (name) => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    if (!/^\d+$/.test(raw)) throw new UsageError(`--${name} must be a whole number, got ${raw}`);
    return Number(raw);
  };
  let baseUrl;
  try {
    baseUrl = new URL(values["base-url"]).toString().replace(/\/$/, "");
  } catch {
    throw new UsageError(`--base-url is not a URL: ${values["base-url"]}`);
  }
  if (!["connect", "grpcweb"].includes(values.protocol)) {
    throw new UsageError(`--protocol must be connect or grpcweb, got ${values.protocol}`);
  }
  if (!["binary", "json"].includes(values.format)) {
    throw new UsageError(`--format must be binary or json, got ${values.format}`);
  }
  const list = (raw) => (raw ? raw.split(",").map((s) => s.trim()).filter(Boolean) : []);
  return {
    baseUrl,
    app: values.app,
    grid: values.grid,
    untilRows: count("until-rows"),
    updates: count("updates"),
    untilCell: cellCondition(values["until-cell"]),
    timeoutMs: count("timeout-ms"),
    token: values.token ?? process.env.AEROGRID_TOKEN ?? "",
    protocol: values.protocol,
    binary: values.format === "binary",
    columns: list(values.columns),
    keys: list(values.keys),
  };
}

// --- values ------------------------------------------------------------------------

function jsonNumber(n) {
  return Number.isFinite(n) ? n : String(n); // NaN / Infinity are not JSON numbers
}

function bigintToJson(n) {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(n)
    : n.toString();
}

function isoTimestamp(ts) {
  // Date keeps milliseconds only; write the fraction ourselves so nanos survive.
  const seconds = ts.seconds; // bigint
  const nanos = ts.nanos ?? 0;
  const whole = new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, "");
  let digits = String(nanos).padStart(9, "0");
  if (nanos % 1_000_000 === 0) digits = digits.slice(0, 3);
  else if (nanos % 1_000 === 0) digits = digits.slice(0, 6);
  return `${whole}.${digits}Z`;
}

function decodeValue(value) {
  const kind = value?.kind;
  switch (kind?.case) {
    case "boolValue":
      return kind.value;
    case "intValue":
      return bigintToJson(kind.value);
    case "floatValue":
      return jsonNumber(kind.value);
    case "stringValue":
    case "decimalValue":
      return kind.value;
    case "timestampValue":
      return isoTimestamp(kind.value);
    default:
      return null;
  }
}

// --- the grid ----------------------------------------------------------------------

class Grid {
  constructor() {
    this.columns = null;
    this.rows = new Map();
    this.pending = null; // a snapshot arriving in chunks
    this.snapshotComplete = false;
    this.seq = 0n;
    this.updates = 0;
  }

  decodeRow(row) {
    if (this.columns === null) throw new Error("protocol error: rows before the schema");
    if (row.cells.length > this.columns.length) {
      throw new Error(
        `protocol error: row ${row.key} has ${row.cells.length} cells for ${this.columns.length} columns`,
      );
    }
    const out = {};
    this.columns.forEach((name, i) => {
      out[name] = i < row.cells.length ? decodeValue(row.cells[i]) : null;
    });
    return out;
  }

  apply(response) {
    const event = response.event;
    switch (event.case) {
      case "schema":
        this.columns = event.value.columns.map((c) => c.name);
        break;
      case "snapshot": {
        const snap = event.value;
        if (this.pending === null) this.pending = new Map();
        for (const row of snap.rows) this.pending.set(row.key, this.decodeRow(row));
        if (snap.complete) {
          // A new snapshot (e.g. after a failed resume) replaces the whole grid.
          this.rows = this.pending;
          this.pending = null;
          this.seq = snap.seq;
          this.snapshotComplete = true;
        }
        break;
      }
      case "delta": {
        const delta = event.value;
        for (const row of delta.upserts) this.rows.set(row.key, this.decodeRow(row));
        for (const key of delta.deletes) this.rows.delete(key);
        this.seq = delta.seq;
        if (this.snapshotComplete) this.updates += 1;
        break;
      }
      default:
        break; // heartbeats and events newer than this client
    }
  }

  toJSON() {
    const rows = {};
    for (const key of [...this.rows.keys()].sort()) rows[key] = this.rows.get(key);
    return { rows, seq: bigintToJson(this.seq), updates: this.updates };
  }
}

function cellCondition(raw) {
  if (raw === undefined) return undefined;
  const match = /^([^.=]+)\.([^=]+)=(.*)$/.exec(raw);
  if (!match) throw new UsageError(`--until-cell must read KEY.COLUMN=VALUE, got ${raw}`);
  return { key: match[1], column: match[2], value: match[3] };
}

function done(grid, opts) {
  if (!grid.snapshotComplete) return false;
  if (opts.untilCell !== undefined) {
    const row = grid.rows.get(opts.untilCell.key);
    if (row === undefined || String(row[opts.untilCell.column]) !== opts.untilCell.value) return false;
  }
  if (opts.untilRows !== undefined && grid.rows.size < opts.untilRows) return false;
  if (opts.updates !== undefined && grid.updates < opts.updates) return false;
  return true;
}

// --- calls ---------------------------------------------------------------------------

function describe(err) {
  if (err instanceof ConnectError) {
    const cause = err.cause instanceof Error && err.cause.cause ? ` (${err.cause.cause})` : "";
    return `[${Code[err.code] ?? err.code}] ${err.rawMessage}${cause}`;
  }
  return String(err?.stack ?? err);
}

function retryable(err) {
  if (!(err instanceof ConnectError)) return false;
  if (err.code === Code.Unavailable) return true;
  // fetch() rejecting (connection refused, reset) surfaces as unknown/unavailable.
  return err.code === Code.Unknown && /fetch failed|ECONNREFUSED|ECONNRESET/i.test(String(err.cause ?? err.message));
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

async function waitForApp(catalog, opts, signal, state) {
  for (;;) {
    try {
      const { apps } = await catalog.listApps({}, { signal });
      const app = apps.find((a) => a.name === opts.app);
      if (app) {
        if (app.endpoint) {
          process.stderr.write(
            `stream_grid: note: ListApps says ${opts.app} is served at ${app.endpoint}; subscribing at ${opts.baseUrl}\n`,
          );
        }
        return app;
      }
      state.last = `ListApps does not list ${opts.app} (apps: ${apps.map((a) => a.name).join(", ") || "none"})`;
    } catch (err) {
      if (signal.aborted || !retryable(err)) throw withContext(err, "ListApps");
      state.last = `ListApps: ${describe(err)}`;
    }
    await sleep(200, signal);
    if (signal.aborted) throw new Error(state.last);
  }
}

function withContext(err, call) {
  const wrapped = new Error(`${call} failed: ${describe(err)}`);
  wrapped.connectError = err;
  return wrapped;
}

async function subscribe(grids, opts, signal, state) {
  const request = {
    app: opts.app,
    grid: opts.grid,
    columns: opts.columns,
    keys: opts.keys,
  };
  for (;;) {
    const grid = new Grid();
    state.grid = grid;
    let received = false;
    try {
      for await (const response of grids.subscribe(request, { signal })) {
        received = true;
        grid.apply(response);
        if (done(grid, opts)) return grid;
      }
      throw new Error("Subscribe failed: the server ended the stream before the grid was done");
    } catch (err) {
      if (!(err instanceof ConnectError)) throw err;
      if (signal.aborted || received || !retryable(err)) throw withContext(err, "Subscribe");
      state.last = `Subscribe: ${describe(err)}`;
    }
    await sleep(200, signal);
    if (signal.aborted) throw new Error(state.last);
  }
}

async function main() {
  let opts;
  try {
    opts = parseCli(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`stream_grid: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }

  const interceptors = [];
  if (opts.token) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${opts.token}`);
      return next(req);
    });
  }
  const transportOptions = { baseUrl: opts.baseUrl, useBinaryFormat: opts.binary, interceptors };
  const transport =
    opts.protocol === "grpcweb"
      ? createGrpcWebTransport(transportOptions)
      : createConnectTransport(transportOptions);
  const catalog = createClient(CatalogService, transport);
  const grids = createClient(GridService, transport);

  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), opts.timeoutMs);
  const state = { last: "", grid: null };
  try {
    await waitForApp(catalog, opts, controller.signal, state);
    const grid = await subscribe(grids, opts, controller.signal, state);
    clearTimeout(timer);
    controller.abort(); // ends the stream
    process.stdout.write(JSON.stringify(grid) + "\n", () => process.exit(0));
  } catch (err) {
    clearTimeout(timer);
    let message = err instanceof Error ? err.message : describe(err);
    if (controller.signal.aborted) {
      const g = state.grid;
      const progress = g
        ? ` (snapshot ${g.snapshotComplete ? "complete" : "incomplete"}, ${g.rows.size} rows, ${g.updates} updates, seq ${g.seq})`
        : "";
      const last = state.last ? `; last: ${state.last}` : "";
      message = `timed out after ${opts.timeoutMs} ms${progress}${last}`;
    }
    process.stderr.write(`stream_grid: ${message}\n`, () => process.exit(1));
  }
}

main().catch((err) => {
  process.stderr.write(`stream_grid: ${err?.stack ?? err}\n`, () => process.exit(1));
});
