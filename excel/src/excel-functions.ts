// The Office.js layer: Excel's streaming custom functions as a thin adapter over core/.
// Registered with CustomFunctions.associate only when Excel's runtime is present, so
// Node (tests, test-live/) can import this module and call the same functions with a
// stand-in invocation. The JSDoc tags are what custom-functions-metadata reads to
// generate functions.json (namespace AEROGRID is set in the manifest); parameter types are
// the ones it accepts (string, number, boolean, any, any[][]), narrowed right away.
import { streamApps } from "./core/apps.js";
import { gridFeedOpener } from "./core/feed.js";
import { streamGrid, streamValue, type GridFeedEvent, type StreamingInvocationLike } from "./core/grid-formulas.js";
import type { ExcelValue, Matrix } from "./core/matrix.js";
import type { ArgumentValue } from "./core/options.js";
import { SubscriptionRegistry } from "./core/registry.js";
import { DEFAULT_BASE_URL, normalizeBaseUrl } from "./core/url.js";
import { ServiceClients, type ServiceClientsOptions } from "./transport.js";

export { DEFAULT_BASE_URL };

let clients: ServiceClients | undefined;
let registry: SubscriptionRegistry<GridFeedEvent> | undefined;
let configuredWith: ServiceClientsOptions | undefined;

/** An open =AEROGRID.APPS() formula: its watch, restartable on another endpoint. */
interface OpenAppsFormula {
  restart(): void;
}
const openApps = new Set<OpenAppsFormula>();

/**
 * Points every function at ONE endpoint (the task pane calls this on start and on a change
 * of URL or token). Open GRID / VALUE formulas move to the new endpoint at once: formulas
 * Excel started before the task pane loaded its settings must not stay on the default one;
 * open APPS formulas watch the new endpoint's catalog. The same URL and token again change
 * nothing, so the streams are not reopened for nothing.
 */
export function configure(options: ServiceClientsOptions): ServiceClients {
  if (clients !== undefined && registry !== undefined && sameSettings(clients, options)) return clients;
  const created = new ServiceClients(options);
  clients = created;
  configuredWith = options;
  const opener = gridFeedOpener({ subscribe: created.subscribe });
  if (registry === undefined) registry = new SubscriptionRegistry<GridFeedEvent>(opener);
  else registry.reopen(opener);
  for (const formula of openApps) formula.restart();
  return created;
}

function sameSettings(at: ServiceClients, options: ServiceClientsOptions): boolean {
  const before = configuredWith;
  if (before === undefined || options.fetch !== undefined || options.tenantOf !== undefined) return false;
  return (
    at.baseUrl === normalizeBaseUrl(options.baseUrl) &&
    (before.token?.trim() ?? "") === (options.token?.trim() ?? "") &&
    (before.useBinaryFormat ?? true) === (options.useBinaryFormat ?? true) &&
    before.fetch === undefined &&
    before.tenantOf === undefined
  );
}

function current(): { clients: ServiceClients; registry: SubscriptionRegistry<GridFeedEvent> } {
  if (clients === undefined || registry === undefined) configure({ baseUrl: DEFAULT_BASE_URL });
  return { clients: clients as ServiceClients, registry: registry as SubscriptionRegistry<GridFeedEvent> };
}

/** Number of open grid streams (for tests and the task pane's status). */
export function openStreams(): number {
  return registry?.size ?? 0;
}

/**
 * A live grid, spilled with a header row.
 * @customfunction GRID
 * @param app The app's name.
 * @param grid The grid's name.
 * @param [columns] Only these columns, in this order: text "a, b" or a range of names.
 * @param [options] e.g. "order=insertion; decimals=text; interval=500; header=false; keys=a|b".
 * @param invocation Excel's streaming invocation.
 * @streaming
 */
export function grid(
  app: string,
  grid: string,
  columns: any, // text or a range
  options: any, // text
  invocation: CustomFunctions.StreamingInvocation<any[][]>,
): void {
  const typed: StreamingInvocationLike<Matrix> = invocation;
  streamGrid(current().registry, String(app), String(grid), columns as ArgumentValue, options as ArgumentValue, typed);
}

/**
 * One live cell of a grid.
 * @customfunction VALUE
 * @param app The app's name.
 * @param grid The grid's name.
 * @param rowKey The row's key.
 * @param column The column's name.
 * @param invocation Excel's streaming invocation.
 * @streaming
 */
export function value(
  app: string,
  grid: string,
  rowKey: any, // text or a number
  column: string,
  invocation: CustomFunctions.StreamingInvocation<any>,
): void {
  const typed: StreamingInvocationLike<ExcelValue> = invocation;
  streamValue(current().registry, String(app), String(grid), String(rowKey), String(column), typed);
}

/**
 * The apps the endpoint offers, live: name, tenant, status, grids.
 * @customfunction APPS
 * @param invocation Excel's streaming invocation.
 * @streaming
 */
export function apps(invocation: CustomFunctions.StreamingInvocation<any[][]>): void {
  const typed: StreamingInvocationLike<Matrix> = invocation;
  let stop = (): void => undefined;
  const formula: OpenAppsFormula = {
    restart: () => {
      stop();
      const { clients: at } = current();
      // The watch gets its own invocation, so that moving it to another endpoint is not
      // mistaken for Excel's cancel; Excel's cancel (below) stops whichever is running.
      const inner: StreamingInvocationLike<Matrix> = { setResult: (matrix) => typed.setResult(matrix) };
      streamApps(inner, {
        watch: (signal) => at.catalog.watchApps({}, { signal }),
        onApp: (app) => {
          if (app.tenant) at.tenants.set(app.name, app.tenant);
        },
        listGrids: at.listGrids,
      });
      stop = () => inner.onCanceled?.();
    },
  };
  formula.restart();
  openApps.add(formula);
  typed.onCanceled = () => {
    openApps.delete(formula);
    stop();
  };
}

/** The functions under the ids of functions.json, as Excel calls them (AEROGRID.<ID>). */
export const FUNCTIONS = { GRID: grid, VALUE: value, APPS: apps } as const;

/** What of Excel's global `CustomFunctions` this module uses. */
interface CustomFunctionsRuntime {
  associate(id: string, fn: (...args: never[]) => unknown): void;
}

export function registerWithExcel(runtime: CustomFunctionsRuntime): void {
  for (const [id, fn] of Object.entries(FUNCTIONS)) runtime.associate(id, fn);
}

const runtime = (globalThis as { CustomFunctions?: CustomFunctionsRuntime }).CustomFunctions;
if (runtime !== undefined && typeof runtime.associate === "function") registerWithExcel(runtime);
