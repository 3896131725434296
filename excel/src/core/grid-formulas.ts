// The GRID and VALUE formulas' logic, with Excel's invocation object as an interface:
// the Office.js layer only registers these (CustomFunctions.associate) and hands over its
// StreamingInvocation, which has exactly this shape. Everything here runs in Node tests.
import { Conflator } from "./conflate.js";
import { toCellText } from "./errors.js";
import type { GridState } from "./grid.js";
import { KEY_HEADER, buildMatrix, toExcelValue, type ExcelValue, type Matrix } from "./matrix.js";
import { parseColumns, parseOptions, type ArgumentValue, type GridOptions } from "./options.js";
import type { SubscriptionRegistry } from "./registry.js";

/** The part of CustomFunctions.StreamingInvocation<T> the functions use. */
export interface StreamingInvocationLike<T> {
  setResult(value: T): void;
  onCanceled?: () => void;
}

/** What a shared grid feed tells its formulas. */
export type GridFeedEvent =
  /** The grid changed, or whether the app says it is stale (or a formula joined a feed that has data). */
  | { type: "data"; state: GridState }
  /** Disconnected, retrying: cells keep their last values and say they are stale. */
  | { type: "stale"; state: GridState; error: unknown }
  /** Will not recover without a change (bad grid name, no permission). */
  | { type: "error"; error: unknown };

export type GridRegistry = SubscriptionRegistry<GridFeedEvent>;

export function staleText(error: unknown): string {
  return `stale: ${toCellText(error).replace(/^AeroGrid: /, "")}; reconnecting`;
}

/** The header's note while the app says its values may be out of date (its broker is down). */
export function degradedText(state: GridState): string | undefined {
  if (state.staleReason === undefined) return undefined;
  return `stale: ${state.staleReason || "the app cannot update this grid now"}`;
}

/** =AEROGRID.GRID(app, grid, [columns], [options]) */
export function streamGrid(
  registry: GridRegistry,
  app: string,
  grid: string,
  columnsArg: ArgumentValue,
  optionsArg: ArgumentValue,
  invocation: StreamingInvocationLike<Matrix>,
): void {
  let columns: string[];
  let options: GridOptions;
  try {
    columns = parseColumns(columnsArg);
    options = parseOptions(optionsArg);
  } catch (error) {
    invocation.setResult([[toCellText(error)]]);
    return; // no subscription was opened, so cancel has nothing to close
  }
  // Build lazily at emission time: a conflated burst builds one matrix, not one per delta.
  const conflator = new Conflator<() => Matrix>((build) => invocation.setResult(build()), {
    intervalMs: options.intervalMs,
  });
  const render = (state: GridState, stale: string | undefined): Matrix => {
    try {
      const { matrix } = buildMatrix(state, { ...options, columns });
      if (stale !== undefined && options.header && matrix[0] !== undefined) {
        matrix[0][0] = `${KEY_HEADER} (${stale})`;
      }
      return matrix;
    } catch (error) {
      return [[toCellText(error)]];
    }
  };
  const subscription = registry.subscribe(app, grid, (event) => {
    switch (event.type) {
      case "data":
        conflator.push(() => render(event.state, degradedText(event.state)));
        break;
      case "stale":
        conflator.push(() =>
          event.state.ready ? render(event.state, staleText(event.error)) : [[`AeroGrid: ${staleText(event.error)}`]],
        );
        conflator.flush(); // a broken connection should show at once
        break;
      case "error":
        conflator.push(() => [[toCellText(event.error)]]);
        conflator.flush();
        break;
    }
  });
  invocation.onCanceled = () => {
    conflator.close();
    subscription.cancel();
  };
}

/** =AEROGRID.VALUE(app, grid, row_key, column): one live cell. */
export function streamValue(
  registry: GridRegistry,
  app: string,
  grid: string,
  rowKey: string,
  column: string,
  invocation: StreamingInvocationLike<ExcelValue>,
  intervalMs?: number,
): void {
  const conflator = new Conflator<() => ExcelValue>((build) => invocation.setResult(build()), {
    ...(intervalMs === undefined ? {} : { intervalMs }),
  });
  const read = (state: GridState): ExcelValue => {
    const index = state.columns.indexOf(column);
    if (index < 0) {
      return toCellText(`${app}.${grid} has no column "${column}"; its columns are: ${state.columns.join(", ")}`);
    }
    const cells = state.rows.get(String(rowKey));
    if (cells === undefined) return toCellText(`${app}.${grid} has no row "${rowKey}"`);
    return toExcelValue(cells[index] ?? { case: undefined });
  };
  const subscription = registry.subscribe(app, grid, (event) => {
    switch (event.type) {
      case "data":
        conflator.push(() => read(event.state));
        break;
      case "stale":
        // One cell has no room for a mark: keep the last value until the feed recovers.
        if (!event.state.ready) {
          conflator.push(() => `AeroGrid: ${staleText(event.error)}`);
          conflator.flush();
        }
        break;
      case "error":
        conflator.push(() => toCellText(event.error));
        conflator.flush();
        break;
    }
  });
  invocation.onCanceled = () => {
    conflator.close();
    subscription.cancel();
  };
}
