// The harness page's rendering as pure data: what a sheet would show for one result of a
// streaming function (the spilled matrix, a single cell, or an error line). No DOM here,
// so vitest checks it in Node; main.ts only turns the model into elements.

/** How a cell is drawn: numbers right-aligned as in Excel, text left, booleans centred. */
export type CellKind = "number" | "text" | "boolean" | "empty";

export interface CellModel {
  text: string;
  kind: CellKind;
}

export interface RowModel {
  /** The sheet's row number (1-based), as in Excel's row headings. */
  number: number;
  /** The spilled header row (column names), styled apart from the data. */
  header: boolean;
  cells: CellModel[];
}

/**
 * - `waiting`: no result yet;
 * - `ok`: live data;
 * - `stale`: the connection is down and the cells keep their last values;
 * - `error`: the function gave up (or is retrying before any data) and shows one line.
 */
export type TableState = "waiting" | "ok" | "stale" | "error";

export interface TableModel {
  /** Column letters A, B, C… over the widest row. */
  columns: string[];
  rows: RowModel[];
  state: TableState;
  /** The stale reason or the error line, for the status bar. */
  message: string;
}

export interface RenderOptions {
  /** Whether the first row is a header (GRID and APPS spill one unless header=false; VALUE never). */
  header: boolean;
}

/** Excel's column letters: 0 -> A, 25 -> Z, 26 -> AA. */
export function columnLetters(index: number): string {
  let n = index + 1;
  let letters = "";
  while (n > 0) {
    const rem = (n - 1) % 26;
    letters = String.fromCharCode(65 + rem) + letters;
    n = Math.floor((n - 1) / 26);
  }
  return letters;
}

/** A cell's text as a sheet shows it: booleans as TRUE/FALSE, numbers unformatted (exact). */
export function cellModel(value: unknown): CellModel {
  if (value === null || value === undefined || value === "") return { text: "", kind: "empty" };
  if (typeof value === "number") return { text: String(value), kind: "number" };
  if (typeof value === "boolean") return { text: value ? "TRUE" : "FALSE", kind: "boolean" };
  if (typeof value === "string") return { text: value, kind: "text" };
  return { text: JSON.stringify(value) ?? String(value), kind: "text" };
}

// What core/grid-formulas.ts writes: the header's first cell becomes `key (stale: …; reconnecting)`
// while the feed is down; before any data, or on a final error, a single `AeroGrid: …` cell.
const STALE_HEADER = /^.* \((stale: .*)\)$/;
const ERROR_CELL = /^AeroGrid: /;
const RETRYING_CELL = /^AeroGrid: (stale: .*)$/;

/** The table model of one result (a matrix, or a scalar from VALUE). */
export function renderMatrix(result: unknown, options: RenderOptions = { header: true }): TableModel {
  if (result === undefined) return { columns: [], rows: [], state: "waiting", message: "waiting for the first result" };
  const matrix: unknown[][] = Array.isArray(result)
    ? result.map((row: unknown) => (Array.isArray(row) ? (row as unknown[]) : [row]))
    : [[result]];
  const width = matrix.reduce((max, row) => Math.max(max, row.length), 0);
  const single = matrix.length === 1 && width === 1 ? matrix[0]?.[0] : undefined;
  const error = typeof single === "string" && ERROR_CELL.test(single);
  const first = matrix[0]?.[0];
  // Down before any data: one `AeroGrid: stale: …` cell, still retrying, so stale rather than an error.
  const retrying = error ? RETRYING_CELL.exec(String(single)) : null;
  const stale = retrying ?? (!error && options.header && typeof first === "string" ? STALE_HEADER.exec(first) : null);
  const rows = matrix.map((row, i) => ({
    number: i + 1,
    header: options.header && i === 0 && !error,
    // Pad ragged rows so every row has a cell under each column letter.
    cells: Array.from({ length: width }, (_, j) => cellModel(row[j])),
  }));
  let state: TableState = "ok";
  let message = "";
  if (error && !retrying) {
    state = "error";
    message = String(single);
  } else if (stale) {
    state = "stale";
    message = stale[1] ?? "stale";
  }
  return { columns: Array.from({ length: width }, (_, j) => columnLetters(j)), rows, state, message };
}
