// The live list of apps for the task pane: the catalog's WatchApps stream (injected, as for
// =AEROGRID.APPS), applied to a map and reconnected with the same backoff as the functions.
import {
  appsWithGrids,
  applyWatchEvent,
  GridLookup,
  sortedApps,
  type AppInfoLike,
  type ListGridsFn,
  type WatchAppsFn,
} from "../core/apps.js";
import { Backoff, Reconnector, type ConnectionStatus } from "../core/backoff.js";

export interface CatalogWatchOptions {
  watch: WatchAppsFn;
  /** The apps, sorted by name, after every event. */
  onApps: (apps: AppInfoLike[]) => void;
  onStatus: (status: ConnectionStatus) => void;
  /** Every app seen (the tenants for the routing headers). */
  onApp?: (app: AppInfoLike) => void;
  /** Looks up the grids of running apps the catalog lists without them (a cluster's). */
  listGrids?: ListGridsFn;
  backoff?: Backoff;
}

export interface CatalogWatch {
  stop(): void;
}

export function watchCatalog(options: CatalogWatchOptions): CatalogWatch {
  const apps = new Map<string, AppInfoLike>();
  const show = () => options.onApps(sortedApps(appsWithGrids(apps, lookup)));
  const lookup = options.listGrids === undefined ? undefined : new GridLookup(options.listGrids, () => show());
  const reconnector = new Reconnector({
    backoff: options.backoff ?? new Backoff(),
    resumePoint: () => undefined, // every watch starts with the full list
    onStatus: options.onStatus,
    connect: async (connection) => {
      for await (const event of options.watch(connection.signal)) {
        if (connection.signal.aborted) return;
        connection.received();
        applyWatchEvent(apps, event, options.onApp);
        show();
      }
    },
  });
  reconnector.start();
  return {
    stop: () => {
      reconnector.stop();
      lookup?.close();
    },
  };
}
