// The few Office.js globals the task pane and the sign-in page use, typed structurally
// (no Office typings needed, like custom-functions.d.ts). Reading them is the Office
// boundary: everything past these accessors is typed.

/** Office's key-value store of the shared runtime (OfficeRuntime.storage). */
export interface AsyncStorageLike {
  getItem(key: string): Promise<string | null>;
  setItem(key: string, value: string): Promise<void>;
}

export interface DialogLike {
  addEventHandler(eventType: string, handler: (args: DialogArgs) => void): void;
  close(): void;
}

/** DialogMessageReceived carries `message`; DialogEventReceived carries `error` (a code). */
export interface DialogArgs {
  message?: string;
  origin?: string;
  error?: number;
}

export interface AsyncResultLike<T> {
  status: string; // "succeeded" | "failed"
  value: T;
  error?: { code: number; message: string };
}

export interface OfficeUiLike {
  displayDialogAsync(
    url: string,
    options: { height?: number; width?: number; promptBeforeOpen?: boolean },
    callback: (result: AsyncResultLike<DialogLike>) => void,
  ): void;
  messageParent(message: string): void;
}

export interface OfficeLike {
  onReady(): Promise<unknown>;
  context: { ui: OfficeUiLike };
  EventType: { DialogMessageReceived: string; DialogEventReceived: string };
}

/** A range as the task pane uses it: its top-left cell and that cell's formula. */
export interface ExcelRangeLike {
  getCell(row: number, column: number): ExcelRangeLike;
  formulas: unknown;
}

export interface ExcelContextLike {
  workbook: { getSelectedRange(): ExcelRangeLike };
  sync(): Promise<unknown>;
}

export interface ExcelLike {
  run<T>(batch: (context: ExcelContextLike) => Promise<T>): Promise<T>;
}

type OfficeGlobals = {
  Office?: OfficeLike;
  Excel?: ExcelLike;
  OfficeRuntime?: { storage?: AsyncStorageLike };
};

const globals = (): OfficeGlobals => globalThis as OfficeGlobals;

export const officeGlobal = (): OfficeLike | undefined => globals().Office;
export const excelGlobal = (): ExcelLike | undefined => globals().Excel;
export const officeRuntimeStorage = (): AsyncStorageLike | undefined => globals().OfficeRuntime?.storage;
