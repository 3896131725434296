// =AEROGRID.APPS(): the catalog's WatchApps stream as a live matrix (name, tenant, status,
// grids). The RPC is injected like the grid feed's, so this runs in Node tests.
import { Backoff, Reconnector } from "./backoff.js";
import { Conflator } from "./conflate.js";
import { toCellText } from "./errors.js";
import type { StreamingInvocationLike } from "./grid-formulas.js";
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

/** GridService.ListGrids for one app, routed to it (the cluster's catalog lists no grids). */
export type ListGridsFn = (app: string, signal: AbortSignal) => Promise<readonly { name: string }[]>;

const RUNNING = 3;

/**
 * Fills in the grids of apps whose AppInfo comes without them. A cluster's catalog only
 * knows the App resources, not the grids inside each app; the app itself does, and is
 * reached through the same endpoint with the routing headers and the caller's own token
 * (so nothing is shown the caller could not subscribe to). One lookup per running app
 * and AppInfo version: a changed AppInfo (new status, new code) asks again; a failed
 * lookup leaves the grids empty until the app's next change.
 */
export class GridLookup {
  private readonly found = new Map<string, { version: string; grids: readonly { name: string }[] }>();
  private readonly pending = new Map<string, AbortController>();

  constructor(
    private readonly listGrids: ListGridsFn,
    /** Called when a lookup has added grids: render again. */
    private readonly onFound: () => void,
  ) {}

  /** `app` with its grids: its own when it has some, else the ones looked up (starting one). */
  withGrids(app: AppInfoLike): AppInfoLike {
    if (app.grids.length > 0 || app.status !== RUNNING) {
      this.forget(app.name);
      return app;
    }
    const version = `${app.tenant}\u0000${app.status}\u0000${app.message}`;
    const known = this.found.get(app.name);
    if (known?.version === version) return known.grids.length > 0 ? { ...app, grids: known.grids } : app;
    this.forget(app.name);
    this.lookUp(app.name, version);
    return app;
  }

  /** Drops what is known of apps no longer listed, and any lookup in flight for them. */
  retain(names: ReadonlySet<string>): void {
    for (const name of [...this.found.keys(), ...this.pending.keys()]) if (!names.has(name)) this.forget(name);
  }

  close(): void {
    for (const name of [...this.pending.keys()]) this.forget(name);
    this.found.clear();
  }

  private forget(name: string): void {
    this.pending.get(name)?.abort();
    this.pending.delete(name);
    this.found.delete(name);
  }

  private lookUp(name: string, version: string): void {
    const controller = new AbortController();
    this.pending.set(name, controller);
    this.found.set(name, { version, grids: [] }); // asked once per version, found or not
    this.listGrids(name, controller.signal).then(
      (grids) => {
        if (controller.signal.aborted) return;
        this.pending.delete(name);
        const names = grids.map((g) => ({ name: g.name }));
        this.found.set(name, { version, grids: names });
        if (names.length > 0) this.onFound();
      },
      () => {
        if (this.pending.get(name) === controller) this.pending.delete(name);
      },
    );
  }
}

/** The apps by name with their grids filled in by `lookup` (when there is one). */
export function appsWithGrids(apps: ReadonlyMap<string, AppInfoLike>, lookup?: GridLookup): Map<string, AppInfoLike> {
  if (lookup === undefined) return new Map(apps);
  lookup.retain(new Set(apps.keys()));
  return new Map([...apps].map(([name, app]) => [name, lookup.withGrids(app)]));
}

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
  /** Looks up the grids of running apps listed without them (a cluster's catalog). */
  listGrids?: ListGridsFn;
}

/** =AEROGRID.APPS(): one watch per formula, closed when Excel cancels it. */
export function streamApps(invocation: StreamingInvocationLike<Matrix>, options: StreamAppsOptions): void {
  const apps = new Map<string, AppInfoLike>();
  let ready = false;
  const conflator = new Conflator<() => Matrix>((build) => invocation.setResult(build()), {
    ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
  });
  const lookup =
    options.listGrids === undefined
      ? undefined
      : new GridLookup(options.listGrids, () => conflator.push(() => appsMatrix(appsWithGrids(apps, lookup))));
  const reconnector = new Reconnector({
    backoff: options.backoff?.() ?? new Backoff(),
    resumePoint: () => undefined, // every watch starts with the full list
    onStatus: (status) => {
      if (status.state === "waiting") {
        const text = `${toCellText(status.error).replace(/^AeroGrid: /, "")}; reconnecting`;
        conflator.push(() => {
          if (!ready) return [[`AeroGrid: ${text}`]];
          const matrix = appsMatrix(appsWithGrids(apps, lookup));
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
        conflator.push(() => appsMatrix(appsWithGrids(apps, lookup)));
      }
    },
  });
  reconnector.start();
  invocation.onCanceled = () => {
    conflator.close();
    reconnector.stop();
    lookup?.close();
  };
}
