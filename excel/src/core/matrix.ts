// Builds the 2-D array that =AEROGRID.GRID spills: a header row, then one row per grid
// row in a stable order, with cells converted to what Excel can hold.
import { ArgumentError, PayloadTooLargeError } from "./errors.js";
import type { Cell } from "./grid.js";
import type { DecimalMode, RowOrder } from "./options.js";

export type ExcelValue = string | number | boolean;
export type Matrix = ExcelValue[][];

/** Excel on the web refuses custom-function results over 5 MB. */
export const EXCEL_PAYLOAD_LIMIT_BYTES = 5_000_000;
export const KEY_HEADER = "key";

export interface MatrixInput {
  app: string;
  grid: string;
  columns: readonly string[];
  rows: ReadonlyMap<string, readonly Cell[]>;
}

export interface MatrixOptions {
  /** Only these columns, in this order; [] for all. */
  columns?: readonly string[];
  order?: RowOrder;
  decimals?: DecimalMode;
  header?: boolean;
  /** Only these row keys; [] for all. */
  keys?: readonly string[];
  limitBytes?: number;
}

export interface BuiltMatrix {
  matrix: Matrix;
  /** Estimated JSON size of the result, as Excel counts it against its limit. */
  bytes: number;
}

const MS_PER_DAY = 86_400_000;
const UNIX_EPOCH_AS_EXCEL_SERIAL = 25_569; // 1970-01-01 in Excel's 1900 date system

/** Excel serial date (days since 1899-12-30, UTC) for a protobuf Timestamp. */
export function toExcelSerial(ts: { seconds: bigint; nanos: number }): number {
  const ms = Number(ts.seconds) * 1000 + ts.nanos / 1e6;
  return ms / MS_PER_DAY + UNIX_EPOCH_AS_EXCEL_SERIAL;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function toExcelValue(cell: Cell, decimals: DecimalMode = "number"): ExcelValue {
  switch (cell.case) {
    case "boolValue":
    case "stringValue":
      return cell.value;
    case "intValue":
      // Beyond 2^53 a number would silently change the value: show it exactly, as text.
      return cell.value <= MAX_SAFE && cell.value >= -MAX_SAFE ? Number(cell.value) : cell.value.toString();
    case "floatValue":
      // Excel has no NaN or infinity; a number there would show as #NUM! with no reason.
      return Number.isFinite(cell.value) ? cell.value : String(cell.value);
    case "decimalValue": {
      if (decimals === "text") return cell.value;
      const n = Number(cell.value);
      return Number.isFinite(n) ? n : cell.value;
    }
    case "timestampValue":
      return toExcelSerial(cell.value);
    default:
      return ""; // null: an empty-looking cell, the same on every Excel
  }
}

const CANONICAL_INT = /^-?(0|[1-9]\d*)$/;

/** Integer-looking keys in numeric order first, then the rest by code unit: deterministic. */
export function compareKeys(a: string, b: string): number {
  const ai = CANONICAL_INT.test(a);
  const bi = CANONICAL_INT.test(b);
  if (ai && bi) {
    const d = BigInt(a) - BigInt(b);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  }
  if (ai !== bi) return ai ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function buildMatrix(input: MatrixInput, options: MatrixOptions = {}): BuiltMatrix {
  const limit = options.limitBytes ?? EXCEL_PAYLOAD_LIMIT_BYTES;
  const decimals = options.decimals ?? "number";
  const indexes = columnIndexes(input, options.columns ?? []);
  const names = indexes.map((i) => input.columns[i] as string);

  let keys: string[];
  if (options.keys && options.keys.length > 0) {
    // Requested keys keep the user's order unless a sort is asked for; absent keys are skipped.
    keys = options.keys.filter((k) => input.rows.has(k));
  } else {
    keys = [...input.rows.keys()];
  }
  if ((options.order ?? "key") === "key") keys.sort(compareKeys);

  const matrix: Matrix = [];
  let bytes = 2; // the outer brackets
  const add = (row: ExcelValue[]): void => {
    bytes += rowBytes(row) + (matrix.length > 0 ? 1 : 0); // the comma between rows
    matrix.push(row);
  };
  if (options.header ?? true) add([KEY_HEADER, ...names]);
  for (const key of keys) {
    const cells = input.rows.get(key) as readonly Cell[];
    const row: ExcelValue[] = [key];
    for (const i of indexes) row.push(toExcelValue(cells[i] ?? { case: undefined }, decimals));
    add(row);
    if (bytes > limit) throw tooLarge(input, keys.length, names.length, bytes, matrix.length, limit);
  }
  // Excel shows nothing for an empty array: keep at least one row so the cell says something.
  if (matrix.length === 0) add([`${input.app}.${input.grid}: no rows`]);
  return { matrix, bytes };
}

function columnIndexes(input: MatrixInput, wanted: readonly string[]): number[] {
  if (wanted.length === 0) return input.columns.map((_, i) => i);
  return wanted.map((name) => {
    const i = input.columns.indexOf(name);
    if (i < 0) {
      throw new ArgumentError(
        `${input.app}.${input.grid} has no column "${name}"; its columns are: ${input.columns.join(", ") || "(none)"}`,
      );
    }
    return i;
  });
}

const encoder = new TextEncoder();

/** JSON size of one row: values, commas, brackets; strings in UTF-8 with their quotes. */
function rowBytes(row: readonly ExcelValue[]): number {
  let n = 2 + Math.max(0, row.length - 1); // the brackets and the commas between values
  for (const v of row) {
    if (typeof v === "string") n += encoder.encode(v).length + 2;
    else n += String(v).length;
  }
  return n;
}

function tooLarge(
  input: MatrixInput,
  rows: number,
  columns: number,
  bytesSoFar: number,
  rowsSoFar: number,
  limit: number,
): PayloadTooLargeError {
  // Extrapolate from the rows built so far, so huge grids are refused without building them.
  const estimate = Math.round((bytesSoFar / rowsSoFar) * (rows + 1));
  const mb = (b: number): string => (b / 1_000_000).toFixed(1);
  return new PayloadTooLargeError(
    `${input.app}.${input.grid} is too large for Excel (about ${mb(estimate)} MB for ${rows} rows × ${columns + 1} columns; ` +
      `the limit is ${mb(limit)} MB). Pick fewer columns, or filter rows with the options, e.g. "keys=a|b"`,
    estimate,
    limit,
  );
}
