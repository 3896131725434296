// Builders for cells and rows shaped like the generated proto messages.
import type { Cell, RowIn } from "../src/core/grid.js";

export const int = (v: number | bigint): Cell => ({ case: "intValue", value: BigInt(v) });
export const str = (v: string): Cell => ({ case: "stringValue", value: v });
export const flt = (v: number): Cell => ({ case: "floatValue", value: v });
export const bool = (v: boolean): Cell => ({ case: "boolValue", value: v });
export const dec = (v: string): Cell => ({ case: "decimalValue", value: v });
export const ts = (ms: number): Cell => ({
  case: "timestampValue",
  value: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
});
export const nul: Cell = { case: undefined };

export const row = (key: string, ...cells: Cell[]): RowIn => ({ key, cells: cells.map((kind) => ({ kind })) });
