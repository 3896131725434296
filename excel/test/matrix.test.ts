import { describe, expect, it } from "vitest";
import { ArgumentError, PayloadTooLargeError, toCellText } from "../src/core/errors.js";
import type { Cell } from "../src/core/grid.js";
import { buildMatrix, compareKeys, EXCEL_PAYLOAD_LIMIT_BYTES, toExcelSerial, toExcelValue } from "../src/core/matrix.js";
import { bool, dec, flt, int, nul, str, ts } from "./helpers.js";

function grid(rows: [string, Cell[]][], columns = ["units_sold", "name"]) {
  return { app: "ordersapp", grid: "product_sum", columns, rows: new Map(rows) };
}

describe("buildMatrix", () => {
  const input = grid([
    ["tea", [int(2), str("Tea")]],
    ["apple", [int(12), str("Apple")]],
    ["coffee", [int(5), str("Coffee")]],
  ]);

  it("spills a header row and rows sorted by key by default", () => {
    expect(buildMatrix(input).matrix).toEqual([
      ["key", "units_sold", "name"],
      ["apple", 12, "Apple"],
      ["coffee", 5, "Coffee"],
      ["tea", 2, "Tea"],
    ]);
  });

  it("keeps insertion order when asked", () => {
    expect(buildMatrix(input, { order: "insertion" }).matrix.map((r) => r[0])).toEqual(["key", "tea", "apple", "coffee"]);
  });

  it("selects and reorders columns", () => {
    expect(buildMatrix(input, { columns: ["name"] }).matrix[1]).toEqual(["apple", "Apple"]);
    expect(buildMatrix(input, { columns: ["name", "units_sold"] }).matrix[0]).toEqual(["key", "name", "units_sold"]);
  });

  it("refuses an unknown column, naming the columns there are", () => {
    expect(() => buildMatrix(input, { columns: ["price"] })).toThrow(ArgumentError);
    expect(() => buildMatrix(input, { columns: ["price"] })).toThrow(
      'ordersapp.product_sum has no column "price"; its columns are: units_sold, name',
    );
  });

  it("filters keys and can drop the header", () => {
    expect(buildMatrix(input, { keys: ["tea", "nope", "apple"], header: false }).matrix).toEqual([
      ["apple", 12, "Apple"],
      ["tea", 2, "Tea"],
    ]);
    expect(buildMatrix(input, { keys: ["tea", "apple"], order: "insertion" }).matrix.map((r) => r[0])).toEqual([
      "key",
      "tea",
      "apple",
    ]);
  });

  it("orders integer keys numerically, before other keys", () => {
    const keys = ["10", "9", "-3", "b", "a", "010"].sort(compareKeys);
    expect(keys).toEqual(["-3", "9", "10", "010", "a", "b"]);
  });

  it("a row moved by an update keeps its insertion position; a re-inserted row goes last", () => {
    const rows = new Map<string, Cell[]>([
      ["a", [int(1)]],
      ["b", [int(2)]],
    ]);
    rows.set("a", [int(3)]);
    rows.delete("b");
    rows.set("b", [int(4)]);
    const m = buildMatrix({ app: "x", grid: "g", columns: ["n"], rows }, { order: "insertion" }).matrix;
    expect(m).toEqual([["key", "n"], ["a", 3], ["b", 4]]);
  });

  it("says so when the grid is empty, instead of spilling nothing", () => {
    expect(buildMatrix(grid([]), { header: false }).matrix).toEqual([["ordersapp.product_sum: no rows"]]);
  });

  it("refuses a grid over Excel's 5 MB with a message suggesting a filter", () => {
    const rows: [string, Cell[]][] = [];
    for (let i = 0; i < 60_000; i++) rows.push([`row-${i}`, [int(i), str("x".repeat(80))]]);
    let err: unknown;
    try {
      buildMatrix(grid(rows));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    const e = err as PayloadTooLargeError;
    expect(e.limitBytes).toBe(EXCEL_PAYLOAD_LIMIT_BYTES);
    expect(e.estimatedBytes).toBeGreaterThan(5_000_000);
    expect(e.estimatedBytes).toBeLessThan(8_000_000);
    expect(toCellText(e)).toMatch(/^AeroGrid: ordersapp\.product_sum is too large for Excel \(about \d+\.\d MB for 60000 rows/);
    expect(e.message).toContain("filter rows");
    // The same grid fits once a column is dropped.
    const { bytes } = buildMatrix(grid(rows), { columns: ["units_sold"] });
    expect(bytes).toBeLessThan(EXCEL_PAYLOAD_LIMIT_BYTES);
  });

  it("estimates the size as the JSON Excel receives", () => {
    const built = buildMatrix(grid([["é", [int(1), str("naïve \u20ac")]]]));
    expect(built.bytes).toBe(new TextEncoder().encode(JSON.stringify(built.matrix)).length);
  });
});

describe("toExcelValue", () => {
  it("converts every cell kind", () => {
    expect(toExcelValue(int(42))).toBe(42);
    expect(toExcelValue(int(2n ** 60n))).toBe("1152921504606846976");
    expect(toExcelValue(flt(1.5))).toBe(1.5);
    expect(toExcelValue(flt(Number.NaN))).toBe("NaN");
    expect(toExcelValue(flt(-Infinity))).toBe("-Infinity");
    expect(toExcelValue(str("tea"))).toBe("tea");
    expect(toExcelValue(bool(false))).toBe(false);
    expect(toExcelValue(nul)).toBe("");
  });

  it("gives decimals as numbers or exact text", () => {
    expect(toExcelValue(dec("12.50"))).toBe(12.5);
    expect(toExcelValue(dec("12.50"), "text")).toBe("12.50");
    expect(toExcelValue(dec("12345678901234567890.123"), "text")).toBe("12345678901234567890.123");
  });

  it("gives timestamps as Excel serial dates (UTC)", () => {
    expect(toExcelValue(ts(0))).toBe(25569);
    expect(toExcelValue(ts(Date.UTC(2024, 0, 1, 12, 0, 0)))).toBe(45292.5);
    expect(toExcelSerial({ seconds: -2209161600n, nanos: 0 })).toBe(0); // 1899-12-30
  });
});
