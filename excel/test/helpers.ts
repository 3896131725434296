// Builders for cells and rows shaped like the generated proto messages.
import type { WatchAppsEvent } from "../src/core/apps.js";
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

/** A stream the test pushes into. */
export function controllableWatch() {
  const queue: WatchAppsEvent[] = [];
  let wake: (() => void) | undefined;
  let failWith: unknown;
  const opened: AbortSignal[] = [];
  const watch = (signal: AbortSignal): AsyncIterable<WatchAppsEvent> => {
    opened.push(signal);
    return {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length > 0) yield queue.shift() as WatchAppsEvent;
          if (failWith !== undefined) {
            const e = failWith;
            failWith = undefined;
            throw e;
          }
          if (signal.aborted) return;
          await new Promise<void>((resolve) => (wake = resolve));
        }
      },
    };
  };
  const push = (e: WatchAppsEvent) => {
    queue.push(e);
    wake?.();
  };
  const fail = (e: unknown) => {
    failWith = e;
    wake?.();
  };
  return { watch, push, fail, opened };
}
