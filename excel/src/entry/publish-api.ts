// The entry of dist/addin/functions.js, the ONE classic script that Excel's shared runtime,
// the task pane and the harness page load (and Node live tests import for its side effect):
// it publishes the functions' single module instance as globalThis.AeroGrid, so the task
// pane configures the same registry the formulas use instead of bundling a second copy.
// Importing ../excel-functions.js also registers the functions when Excel's runtime is there.
import { configure, DEFAULT_BASE_URL, FUNCTIONS, openStreams } from "../excel-functions.js";
import { publishAeroGrid } from "./global.js";

// Set by scripts/bundle.mjs (the package version); absent in tsc's output.
declare const __AEROGRID_VERSION__: string | undefined;

// In Excel the page is taskpane.html?endpoint=… (the manifest's endpoint): formulas that
// Excel starts before the task pane has read its stored settings go there, not to the
// local default. The pane's configure() later moves them if the user chose another one.
const pageEndpoint = new URLSearchParams((globalThis as { location?: { search?: string } }).location?.search ?? "").get("endpoint");
if (pageEndpoint) {
  try {
    configure({ baseUrl: pageEndpoint });
  } catch {
    // a bad URL: the functions keep the default, and the task pane shows the error
  }
}

publishAeroGrid({
  configure,
  FUNCTIONS,
  openStreams,
  DEFAULT_BASE_URL,
  version: typeof __AEROGRID_VERSION__ === "string" ? __AEROGRID_VERSION__ : "dev",
});
