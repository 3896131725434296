// The harness page's pure parts: the table model of a result (what the sheet shows) and
// the query parameters. The DOM wiring (src/harness/main.ts) runs in headless Chromium
// in tests/excel/test_excel_harness.py.
import { describe, expect, it } from "vitest";
import { asFunction, hasHeader, missing, parseParams, toSearch } from "../src/harness/params.js";
import { cellModel, columnLetters, renderMatrix, type TableModel } from "../src/harness/render.js";

const texts = (model: TableModel): string[][] => model.rows.map((r) => r.cells.map((c) => c.text));

describe("columnLetters", () => {
  it("names columns as Excel does", () => {
    expect([0, 1, 25, 26, 27, 51, 52, 701, 702].map(columnLetters)).toEqual([
      "A",
      "B",
      "Z",
      "AA",
      "AB",
      "AZ",
      "BA",
      "ZZ",
      "AAA",
    ]);
  });
});

describe("cellModel", () => {
  it("shows numbers exactly and right-aligned, booleans as TRUE/FALSE, empty cells blank", () => {
    expect(cellModel(6)).toEqual({ text: "6", kind: "number" });
    expect(cellModel(0.1)).toEqual({ text: "0.1", kind: "number" });
    expect(cellModel(true)).toEqual({ text: "TRUE", kind: "boolean" });
    expect(cellModel("")).toEqual({ text: "", kind: "empty" });
    expect(cellModel(null)).toEqual({ text: "", kind: "empty" });
    expect(cellModel("9007199254740993")).toEqual({ text: "9007199254740993", kind: "text" });
  });
});

describe("renderMatrix", () => {
  it("draws a spilled grid with a header row, letters and row numbers", () => {
    const model = renderMatrix([
      ["key", "units_sold", "orders"],
      ["apple", 6, 3],
      ["tea", 35, 5],
    ]);
    expect(model.state).toBe("ok");
    expect(model.columns).toEqual(["A", "B", "C"]);
    expect(model.rows.map((r) => [r.number, r.header])).toEqual([
      [1, true],
      [2, false],
      [3, false],
    ]);
    expect(texts(model)).toEqual([
      ["key", "units_sold", "orders"],
      ["apple", "6", "3"],
      ["tea", "35", "5"],
    ]);
    expect(model.rows[1]!.cells.map((c) => c.kind)).toEqual(["text", "number", "number"]);
  });

  it("marks a grid stale when the header's first cell carries the reconnecting note", () => {
    const model = renderMatrix([
      ["key (stale: unavailable (connection refused); reconnecting)", "units_sold"],
      ["tea", 35],
    ]);
    expect(model.state).toBe("stale");
    expect(model.message).toBe("stale: unavailable (connection refused); reconnecting");
    expect(texts(model)[1]).toEqual(["tea", "35"]); // the last values stay
  });

  it("shows a final error as one red cell, not as a header", () => {
    const line = "AeroGrid: not found (app 'shop' has no grid named 'nope')";
    const model = renderMatrix([[line]]);
    expect(model.state).toBe("error");
    expect(model.message).toBe(line);
    expect(model.rows).toEqual([{ number: 1, header: false, cells: [{ text: line, kind: "text" }] }]);
  });

  it("treats a connection down before any data as stale (still retrying), not final", () => {
    const model = renderMatrix([["AeroGrid: stale: unavailable; reconnecting"]]);
    expect(model.state).toBe("stale");
    expect(model.message).toBe("stale: unavailable; reconnecting");
  });

  it("draws VALUE's single value as one cell, and a headerless grid without a header row", () => {
    const value = renderMatrix(12, { header: false });
    expect(value.columns).toEqual(["A"]);
    expect(value.rows).toEqual([{ number: 1, header: false, cells: [{ text: "12", kind: "number" }] }]);
    const bare = renderMatrix([["tea", 1]], { header: false });
    expect(bare.rows[0]!.header).toBe(false);
    // A key that merely looks like the stale note is data when there is no header.
    expect(renderMatrix([["x (stale: y)", 1]], { header: false }).state).toBe("ok");
  });

  it("pads ragged rows and waits before the first result", () => {
    expect(texts(renderMatrix([["a", "b"], ["c"]]))).toEqual([
      ["a", "b"],
      ["c", ""],
    ]);
    const waiting = renderMatrix(undefined);
    expect(waiting.state).toBe("waiting");
    expect(waiting.rows).toEqual([]);
  });
});

describe("params", () => {
  it("defaults the endpoint to the page's origin and the function to grid", () => {
    const p = parseParams("?app=shop&grid=product_sum", "http://127.0.0.1:5000");
    expect(p).toEqual({
      endpoint: "http://127.0.0.1:5000",
      app: "shop",
      grid: "product_sum",
      columns: "",
      options: "",
      function: "grid",
      rowKey: "",
      column: "",
    });
    expect(missing(p)).toBe("");
    expect(hasHeader(p)).toBe(true);
  });

  it("reads every parameter and round-trips through the form's query", () => {
    const search =
      "?endpoint=http%3A%2F%2Flocalhost%3A50051%2F&function=VALUE&app=a&grid=g&columns=x%2Cy&options=header%3Dfalse&row_key=tea&column=units_sold";
    const p = parseParams(search, "http://ignored");
    expect(p.endpoint).toBe("http://localhost:50051");
    expect(p.function).toBe("value");
    expect(p.rowKey).toBe("tea");
    expect(parseParams(toSearch(p), "http://ignored")).toEqual(p);
    expect(hasHeader(p)).toBe(false); // VALUE has none
    expect(hasHeader({ ...p, function: "grid" })).toBe(false); // header=false
    expect(hasHeader({ ...p, function: "grid", options: "nonsense" })).toBe(true);
  });

  it("says what is missing", () => {
    expect(missing(parseParams("", "http://o"))).toBe("set app, grid to run GRID");
    expect(missing(parseParams("?function=value&app=a&grid=g", "http://o"))).toBe("set row_key, column to run VALUE");
    expect(missing(parseParams("?function=apps", "http://o"))).toBe("");
    expect(asFunction(" Apps ")).toBe("apps");
    expect(asFunction("sum")).toBe("grid");
  });
});
