// The harness page: runs the add-in's own functions (globalThis.AeroGrid from functions.js,
// loaded by the page before this script) with a stand-in for Excel's StreamingInvocation,
// and draws each result as a sheet would. Headless Chromium tests read `window.harness`
// and the #matrix table; a person can use the form to try other grids.
import { PARAM_NAMES, asFunction, hasHeader, missing, parseParams, toSearch, type HarnessParams } from "./params.js";
import { aeroGrid } from "../entry/global.js";
import { renderMatrix, type TableModel } from "./render.js";

/** The stand-in for Excel's StreamingInvocation: setResult gets each spilled result. */
interface Invocation {
  setResult(value: unknown): void;
  onCanceled?: () => void;
}

/** What tests read (and call) on `window.harness`. */
export interface HarnessApi {
  /** setResult calls so far. */
  results: number;
  /** The last result as the function gave it (a matrix, or one value for VALUE). */
  matrix: unknown;
  /** Date.now() of the last result (0 before any). */
  lastResultAt: number;
  /** The rendered state of the last result. */
  state: TableModel["state"] | "cancelled" | "idle";
  /** Results that showed the stale marker (the connection was down). */
  staleResults: number;
  /** The last stale note seen, e.g. the header's `key (stale: …; reconnecting)` ("" if none). */
  lastStale: string;
  /** Cancels the formula, as Excel does when the cell is cleared. */
  cancel(): void;
}

declare global {
  interface Window {
    harness: HarnessApi;
  }
}

function element<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className !== undefined) el.className = className;
  return el;
}

/** The model as a <table>: a corner cell, column letters, then row numbers beside the cells. */
function drawTable(table: HTMLTableElement, model: TableModel): void {
  table.replaceChildren();
  table.dataset["state"] = model.state;
  const head = element("thead");
  const letters = element("tr");
  letters.append(element("th", "", "corner"), ...model.columns.map((c) => element("th", c, "col")));
  head.append(letters);
  const body = element("tbody");
  for (const row of model.rows) {
    const tr = element("tr", undefined, row.header ? "header" : undefined);
    tr.append(element("th", String(row.number), "row"));
    for (const cell of row.cells) {
      const td = element("td", cell.text, cell.kind);
      if (cell.text.length > 40) td.title = cell.text; // clipped on screen, as in a narrow column
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(head, body);
}

function drawStatus(status: HTMLElement, text: string, state: string): void {
  status.textContent = text;
  status.dataset["state"] = state;
}

/** Fills the form from the parameters; submitting reloads the page with the new query. */
function setUpForm(form: HTMLFormElement, params: HarnessParams): void {
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
  for (const name of PARAM_NAMES) {
    const field = form.elements.namedItem(name);
    if (field instanceof HTMLInputElement || field instanceof HTMLSelectElement) field.value = values[name];
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const read = (name: string): string => String(data.get(name) ?? "");
    // A fresh page: the old formula's stream goes with it (pagehide cancels it).
    location.search = toSearch({
      endpoint: read("endpoint").trim(),
      function: asFunction(read("function")),
      app: read("app").trim(),
      grid: read("grid").trim(),
      columns: read("columns").trim(),
      options: read("options").trim(),
      rowKey: read("row_key").trim(),
      column: read("column").trim(),
    });
  });
}

function start(): void {
  const table = document.getElementById("matrix") as HTMLTableElement;
  const status = document.getElementById("status") as HTMLElement;
  const form = document.getElementById("params") as HTMLFormElement | null;
  const params = parseParams(location.search, location.origin);
  if (form !== null) setUpForm(form, params);

  let invocation: Invocation | undefined;
  const api: HarnessApi = {
    results: 0,
    matrix: undefined,
    lastResultAt: 0,
    state: "idle",
    staleResults: 0,
    lastStale: "",
    cancel() {
      invocation?.onCanceled?.();
      invocation = undefined;
      api.state = "cancelled";
      drawStatus(status, `cancelled after ${api.results} results`, "cancelled");
    },
  };
  window.harness = api;
  drawTable(table, renderMatrix(undefined));

  const published = aeroGrid();
  if (published === undefined) {
    api.state = "error";
    drawStatus(status, "functions.js did not load (globalThis.AeroGrid is missing)", "error");
    return;
  }
  const need = missing(params);
  if (need !== "") {
    drawStatus(status, need, "idle");
    return;
  }

  const header = hasHeader(params);
  const current: Invocation = {
    setResult(value: unknown) {
      if (invocation !== current) return; // cancelled: Excel ignores late results too
      const model = renderMatrix(value, { header });
      api.results += 1;
      api.matrix = value;
      api.lastResultAt = Date.now();
      api.state = model.state;
      if (model.state === "stale") {
        api.staleResults += 1;
        api.lastStale = model.rows[0]?.cells[0]?.text ?? model.message;
      }
      drawTable(table, model);
      const at = new Date(api.lastResultAt).toLocaleTimeString();
      const rows = model.rows.filter((row) => !row.header).length;
      // The stale note and the error line already say what they are.
      const detail = model.message === "" ? `live · ${rows} ${rows === 1 ? "row" : "rows"}` : model.message;
      drawStatus(status, `${detail} · result ${api.results} at ${at}`, model.state);
    },
  };
  invocation = current;
  published.configure({ baseUrl: params.endpoint });
  drawStatus(status, `connecting to ${params.endpoint}…`, "waiting");
  const { GRID, VALUE, APPS } = published.FUNCTIONS;
  // Excel passes an omitted optional argument as null.
  const orNull = (text: string): string | null => (text === "" ? null : text);
  if (params.function === "grid") GRID(params.app, params.grid, orNull(params.columns), orNull(params.options), current);
  else if (params.function === "value") VALUE(params.app, params.grid, params.rowKey, params.column, current);
  else APPS(current);
  // Leaving the page is the cell being cleared: close the stream instead of leaking it.
  addEventListener("pagehide", () => api.cancel());
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
