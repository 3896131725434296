// Parses the optional [columns] and [options] arguments of =AEROGRID.GRID into checked
// values, with errors a user can act on from the cell.
import { DEFAULT_INTERVAL_MS } from "./conflate.js";
import { ArgumentError } from "./errors.js";

export type RowOrder = "key" | "insertion";
export type DecimalMode = "number" | "text";

export interface GridOptions {
  /** Row order: by key (natural sort) or by first insertion. */
  order: RowOrder;
  /** Decimals as numbers (may round past 15 digits) or as exact text. */
  decimals: DecimalMode;
  /** At most one result per this many ms. */
  intervalMs: number;
  /** Show the header row. */
  header: boolean;
  /** Only these row keys (empty: every row). */
  keys: string[];
}

export const DEFAULT_OPTIONS: Readonly<GridOptions> = Object.freeze({
  order: "key",
  decimals: "number",
  intervalMs: DEFAULT_INTERVAL_MS,
  header: true,
  keys: [],
});

export const OPTIONS_HELP =
  "options are name=value pairs separated by ';', e.g. \"order=insertion; decimals=text; interval=500; header=false; keys=a|b\"";

/** Excel passes an omitted argument as null/undefined, a range as a 2-D array. */
export type ArgumentValue = string | number | boolean | null | undefined | unknown[][];

/** Column names from a text ("a, b") or a range of names; [] means every column. */
export function parseColumns(arg: ArgumentValue): string[] {
  if (arg === null || arg === undefined || arg === "") return [];
  const parts = Array.isArray(arg) ? arg.flat().map((v) => String(v ?? "")) : String(arg).split(",");
  return parts.map((s) => s.trim()).filter((s) => s !== "");
}

export function parseOptions(arg: ArgumentValue): GridOptions {
  const options: GridOptions = { ...DEFAULT_OPTIONS, keys: [] };
  if (arg === null || arg === undefined || arg === "") return options;
  if (Array.isArray(arg)) throw new ArgumentError(`options must be text; ${OPTIONS_HELP}`);
  for (const pair of String(arg).split(";")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    if (eq < 0) throw new ArgumentError(`option "${pair.trim()}" has no value; ${OPTIONS_HELP}`);
    const name = pair.slice(0, eq).trim().toLowerCase();
    const value = pair.slice(eq + 1).trim();
    switch (name) {
      case "order":
        options.order = oneOf(name, value.toLowerCase(), ["key", "insertion"] as const);
        break;
      case "decimals":
        options.decimals = oneOf(name, value.toLowerCase(), ["number", "text"] as const);
        break;
      case "interval": {
        const ms = Number(value);
        if (!/^\d+$/.test(value) || ms > 3_600_000) {
          throw new ArgumentError(`interval must be a whole number of ms (0 to 3600000), got "${value}"`);
        }
        options.intervalMs = ms;
        break;
      }
      case "header":
        options.header = oneOf(name, value.toLowerCase(), ["true", "false"] as const) === "true";
        break;
      case "keys":
        options.keys = value.split("|").map((k) => k.trim()).filter((k) => k !== "");
        break;
      default:
        throw new ArgumentError(`unknown option "${name}"; ${OPTIONS_HELP}`);
    }
  }
  return options;
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ArgumentError(`option ${name} must be ${allowed.join(" or ")}, got "${value}"`);
}
