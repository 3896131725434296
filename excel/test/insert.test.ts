// Inserting =AEROGRID.GRID at the selection, against office-addin-mock's Excel.
import { OfficeMockObject } from "office-addin-mock";
import { describe, expect, it } from "vitest";
import { copyFormula, gridFormula, insertFormula } from "../src/taskpane/insert.js";
import type { ExcelLike, ExcelRangeLike } from "../src/taskpane/office.js";

/** An Excel whose selection is B2:D4; getCell(row, column) records its arguments. */
function mockExcel(selection: Record<string, unknown> = {}) {
  const data = {
    context: {
      workbook: {
        range: {
          address: "Sheet1!B2:D4",
          topLeft: { address: "Sheet1!B2" },
          other: { address: "elsewhere" },
          getCell: function (this: { topLeft: unknown; other: unknown }, row: number, column: number) {
            return row === 0 && column === 0 ? this.topLeft : this.other;
          },
        },
        getSelectedRange: function (this: { range: unknown }) {
          return this.range;
        },
        ...selection,
      },
    },
    run: async function (this: { context: unknown }, batch: (context: unknown) => Promise<unknown>) {
      return batch(this.context);
    },
  };
  const mock = new OfficeMockObject(data);
  return { mock, excel: mock as unknown as ExcelLike };
}

describe("gridFormula", () => {
  it("quotes the arguments, doubling inner quotes", () => {
    expect(gridFormula("orders", "product_sum")).toBe('=AEROGRID.GRID("orders","product_sum")');
    expect(gridFormula('say "hi"', "g")).toBe('=AEROGRID.GRID("say ""hi""","g")');
  });
});

describe("insertFormula", () => {
  it("writes the formula into the top-left cell of the selection only", async () => {
    const { mock, excel } = mockExcel();
    const outcome = await insertFormula(excel, '=AEROGRID.GRID("orders","product_sum")');
    expect(outcome).toEqual({ ok: true, message: 'Inserted =AEROGRID.GRID("orders","product_sum")' });
    const range = mock.context.workbook.range;
    expect(range.topLeft.formulas).toEqual([['=AEROGRID.GRID("orders","product_sum")']]);
    expect(range.other.formulas).toBeUndefined();
    expect(range.formulas).toBeUndefined(); // not the whole selection
  });

  it("shows Excel's failure as text instead of throwing", async () => {
    const { excel } = mockExcel({
      getSelectedRange: function () {
        throw Object.assign(new Error("The current selection is invalid for this operation."), { code: "InvalidSelection" });
      },
    });
    const outcome = await insertFormula(excel, "=AEROGRID.GRID(\"a\",\"g\")");
    expect(outcome).toEqual({
      ok: false,
      message: "Could not insert the formula: The current selection is invalid for this operation. (InvalidSelection)",
    });
  });

  it("shows a failed sync as text", async () => {
    const cell: ExcelRangeLike = { formulas: null, getCell: () => cell };
    const excel: ExcelLike = {
      run: (batch) =>
        batch({
          workbook: { getSelectedRange: () => cell },
          sync: () => Promise.reject(new Error("the workbook is in cell-edit mode")),
        }),
    };
    expect(await insertFormula(excel, "=X()")).toEqual({
      ok: false,
      message: "Could not insert the formula: the workbook is in cell-edit mode",
    });
  });

  it("says so when Excel is absent", async () => {
    expect((await insertFormula(undefined, "=X()")).ok).toBe(false);
  });
});

describe("copyFormula", () => {
  it("copies to the clipboard, or shows the formula to copy by hand", async () => {
    const copied: string[] = [];
    expect(await copyFormula({ writeText: async (t) => void copied.push(t) }, "=X()")).toEqual({ ok: true, message: "Copied =X()" });
    expect(copied).toEqual(["=X()"]);
    expect(await copyFormula({ writeText: () => Promise.reject(new Error("denied")) }, "=X()")).toEqual({
      ok: false,
      message: "Copy this formula: =X()",
    });
    expect((await copyFormula(undefined, "=X()")).message).toBe("Copy this formula: =X()");
  });
});
