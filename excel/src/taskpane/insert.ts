// Putting a grid into the sheet: =AEROGRID.GRID("app","grid") in the top-left cell of the
// selection (the formula spills from there), or on the clipboard when Excel cannot.
// Failures come back as text for the pane, never as exceptions.
import { errorText } from "./status.js";
import type { ExcelLike } from "./office.js";

/** A text argument of a formula: quoted, with inner quotes doubled. */
export function formulaText(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

export function gridFormula(app: string, grid: string): string {
  return `=AEROGRID.GRID(${formulaText(app)},${formulaText(grid)})`;
}

export type Outcome = { ok: true; message: string } | { ok: false; message: string };

export async function insertFormula(excel: ExcelLike | undefined, formula: string): Promise<Outcome> {
  if (excel === undefined) return { ok: false, message: "Excel is not available here: copy the formula instead." };
  try {
    await excel.run(async (context) => {
      // Only the top-left cell: the grid spills from it; a multi-cell selection would
      // otherwise get one formula per cell.
      const cell = context.workbook.getSelectedRange().getCell(0, 0);
      cell.formulas = [[formula]];
      await context.sync();
    });
    return { ok: true, message: `Inserted ${formula}` };
  } catch (error) {
    return { ok: false, message: `Could not insert the formula: ${excelErrorText(error)}` };
  }
}

/** Excel's errors (OfficeExtension.Error) carry a code and a message; show both. */
function excelErrorText(error: unknown): string {
  if (typeof error === "object" && error !== null && "code" in error && "message" in error) {
    const { code, message } = error as { code: unknown; message: unknown };
    if (typeof code === "string" && typeof message === "string" && message !== "") return `${message} (${code})`;
  }
  return errorText(error);
}

export interface ClipboardLike {
  writeText(text: string): Promise<void>;
}

export async function copyFormula(clipboard: ClipboardLike | undefined, formula: string): Promise<Outcome> {
  if (clipboard === undefined) return { ok: false, message: `Copy this formula: ${formula}` };
  try {
    await clipboard.writeText(formula);
    return { ok: true, message: `Copied ${formula}` };
  } catch {
    // webviews may deny clipboard access: the formula is still shown to copy by hand
    return { ok: false, message: `Copy this formula: ${formula}` };
  }
}
