// =AEROGRID.APPS(): the catalog's WatchApps stream as a live matrix (name, tenant, status,
// grids). The RPC is injected like the grid feed's, so this runs in Node tests.
import { Backoff, Reconnector } from "./backoff.js";
import { Conflator } from "./conflate.js";
import { toCellText } from "./errors.js";
import type { StreamingInvocationLike } from "./functions.js";
import { compareKeys, type Matrix } from "./matrix.js";

/** An AppInfo, structurally (the generated message fits). */
export interface AppInfoLike {
  name: string;
  tenant: string;
  status: number;
  grids: readonly { name: string }[];
  message: string;
}

/** A WatchAppsResponse, structurally. */
export interface WatchAppsEvent {
  apps: readonly AppInfoLike[];
  removed: readonly string[];
  initial: boolean;
}

export type WatchAppsFn = (signal: AbortSignal) => AsyncIterable<WatchAppsEvent>;

export const APPS_HEADER = ["name", "tenant", "status", "grids"] as const;

// aerogrid.v1.AppStatus, by number (core does not import generated code).
const STATUS_TEXT: Record<number, string> = {
  0: "unknown",
  1: "starting",
  2: "restoring",
  3: "running",
  4: "stopped",
  5: "failed",
};

/** The app's status as text, e.g. "running" or "failed: <message>". */
export function appStatusText(app: AppInfoLike): string {
  const status = STATUS_TEXT[app.status] ?? `status ${app.status}`;
  return app.message ? `${status}: ${app.message}` : status;
}

/** The apps by name, in the order the matrix and the task pane list them. */
export function sortedApps(apps: ReadonlyMap<string, AppInfoLike>): AppInfoLike[] {
  return [...apps.keys()].sort(compareKeys).map((name) => apps.get(name) as AppInfoLike);
}

/** Applies one WatchApps event to the known apps (an initial event replaces them all). */
export function applyWatchEvent(
  apps: Map<string, AppInfoLike>,
  event: WatchAppsEvent,
  onApp?: (app: AppInfoLike) => void,
): void {
  if (event.initial) apps.clear();
  for (const name of event.removed) apps.delete(name);
  for (const app of event.apps) {
    apps.set(app.name, app);
    onApp?.(app);
  }
}

export function appsMatrix(apps: ReadonlyMap<string, AppInfoLike>): Matrix {
  const matrix: Matrix = [[...APPS_HEADER]];
  for (const app of sortedApps(apps)) {
    matrix.push([app.name, app.tenant, appStatusText(app), app.grids.map((g) => g.name).join(", ")]);
  }
  return matrix;
}

export interface StreamAppsOptions {
  watch: WatchAppsFn;
  intervalMs?: number;
  backoff?: () => Backoff;
  /** Called with every app seen (e.g. to learn tenants for the routing headers). */
  onApp?: (app: AppInfoLike) => void;
}

/** =AEROGRID.APPS(): one watch per formula, closed when Excel cancels it. */
export function streamApps(invocation: StreamingInvocationLike<Matrix>, options: StreamAppsOptions): void {
  const apps = new Map<string, AppInfoLike>();
  let ready = false;
  const conflator = new Conflator<() => Matrix>((build) => invocation.setResult(build()), {
    ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
  });
  const reconnector = new Reconnector({
    backoff: options.backoff?.() ?? new Backoff(),
    resumePoint: () => undefined, // every watch starts with the full list
    onStatus: (status) => {
      if (status.state === "waiting") {
        const text = `${toCellText(status.error).replace(/^AeroGrid: /, "")}; reconnecting`;
        conflator.push(() => {
          if (!ready) return [[`AeroGrid: ${text}`]];
          const matrix = appsMatrix(apps);
          (matrix[0] as string[])[0] = `name (stale: ${text})`;
          return matrix;
        });
        conflator.flush();
      } else if (status.state === "failed") {
        conflator.push(() => [[toCellText(status.error)]]);
        conflator.flush();
      }
    },
    connect: async (connection) => {
      for await (const event of options.watch(connection.signal)) {
        if (connection.signal.aborted) return;
        connection.received();
        applyWatchEvent(apps, event, options.onApp);
        ready = true;
        conflator.push(() => appsMatrix(apps));
      }
    },
  });
  reconnector.start();
  invocation.onCanceled = () => {
    conflator.close();
    reconnector.stop();
  };
}
