// globalThis.AeroGrid: what functions.js publishes, typed once for its publisher and its
// readers (the task pane, the harness, Node live tests).
import type { configure, DEFAULT_BASE_URL, FUNCTIONS, openStreams } from "../excel-functions.js";

export interface AeroGridGlobal {
  configure: typeof configure;
  FUNCTIONS: typeof FUNCTIONS;
  openStreams: typeof openStreams;
  DEFAULT_BASE_URL: typeof DEFAULT_BASE_URL;
  /** The add-in's version (package.json), "dev" outside the bundle. */
  version: string;
}

type WithAeroGrid = { AeroGrid?: AeroGridGlobal };

export function publishAeroGrid(api: AeroGridGlobal): void {
  (globalThis as WithAeroGrid).AeroGrid = api;
}

/** The published API, or undefined when functions.js was not loaded before the caller. */
export function aeroGrid(): AeroGridGlobal | undefined {
  return (globalThis as WithAeroGrid).AeroGrid;
}
