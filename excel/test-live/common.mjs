// What the Node drivers of the built add-in share: the bundle Excel loads, run as the
// classic script it is, and command lines where misuse exits 2 with the driver's name.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runInThisContext } from "node:vm";

/** The single-file bundle `npm run build` writes (the file Excel's runtime loads). */
export const BUNDLE = fileURLToPath(new URL("../dist/addin/functions.js", import.meta.url));

/** A usage error: `name: message` on stderr, exit status 2. */
export function usageError(name, message) {
  process.stderr.write(`${name}: ${message}\n`);
  process.exit(2);
}

/** parseArgs' values for `options`; every name in `required` must be given. */
export function parseCli(name, options, required = []) {
  let values;
  try {
    ({ values } = parseArgs({ options }));
  } catch (e) {
    usageError(name, e.message);
  }
  for (const option of required) if (!values[option]) usageError(name, `--${option} is required`);
  return values;
}

/** Runs the bundle (Excel loads it as a script, not a module) and returns globalThis.AeroGrid. */
export function loadAddIn(bundle = BUNDLE) {
  runInThisContext(readFileSync(bundle, "utf8"), { filename: bundle });
  const api = globalThis.AeroGrid;
  if (typeof api?.FUNCTIONS?.GRID !== "function") throw new Error(`${bundle} did not set globalThis.AeroGrid`);
  return api;
}
