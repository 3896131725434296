#!/usr/bin/env node
// Writes dist/addin/, the files the add-in is served from (and that the manifest names):
//   functions.js   ONE classic script (IIFE) of src/entry/publish-api.ts: the custom functions,
//                  connect-web and protobuf; sets globalThis.AeroGrid
//   functions.json the metadata (copied from dist/functions.json: run `npm run metadata` first)
//   taskpane.html / .js / .css, signin.html / .js (the OAuth dialog)
//   harness.html / harness.js (the test page: loads functions.js, then harness.js)
//   assets/icon-{16,32,64,80}.png
// Each script is its own vite (rolldown) library build in IIFE format, since an IIFE has one
// entry. The bundle is built in a fresh folder and swapped in whole, so no stale file of an
// older build is served and a reader (the devkit, a test) never sees a half-written one.
// Every script is checked to be a classic script, and functions.js to publish AeroGrid in Node.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Script } from "node:vm";
import { build } from "vite";
import { ICON_SIZES, iconPng } from "./icons.mjs";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const final = join(root, "dist", "addin");
const out = join(root, "dist", `.addin-${process.pid}`);
const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

const SCRIPTS = {
  functions: "src/entry/publish-api.ts",
  taskpane: "src/entry/taskpane.ts",
  signin: "src/entry/signin.ts",
  harness: "src/harness/main.ts",
};
const PAGES = {
  "taskpane.html": "pages/taskpane.html",
  "taskpane.css": "pages/taskpane.css",
  "signin.html": "pages/signin.html",
  "harness.html": "harness.html",
  "functions.json": "dist/functions.json",
};

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
process.on("exit", () => rmSync(out, { recursive: true, force: true })); // after a failure

for (const [name, entry] of Object.entries(SCRIPTS)) {
  await build({
    configFile: false,
    root,
    logLevel: "warn",
    publicDir: false,
    define: {
      __AEROGRID_VERSION__: JSON.stringify(version),
      "process.env.NODE_ENV": JSON.stringify("production"),
    },
    build: {
      outDir: out,
      emptyOutDir: false,
      target: "es2020", // Excel's webviews (WebView2, Safari 14+) run ES2020
      minify: true,
      sourcemap: true,
      reportCompressedSize: false,
      lib: {
        entry: join(root, entry),
        formats: ["iife"],
        name: `__aerogrid_${name}`, // required for iife; the entries export nothing
        fileName: () => `${name}.js`,
      },
    },
  });
}

for (const [target, source] of Object.entries(PAGES)) {
  const from = join(root, source);
  if (!existsSync(from)) throw new Error(`bundle: ${source} is missing (npm run build runs metadata first)`);
  copyFileSync(from, join(out, target));
}
for (const size of ICON_SIZES) writeFileSync(join(out, "assets", `icon-${size}.png`), iconPng(size));

// Classic scripts only: a <script> without type="module" cannot run import/export.
for (const name of Object.keys(SCRIPTS)) {
  const file = join(out, `${name}.js`);
  new Script(readFileSync(file, "utf8"), { filename: file });
}
// Node imports functions.js for its side effect (test-live/): it must publish the API.
const probe = `await import(${JSON.stringify(pathToFileURL(join(out, "functions.js")).href)});
const api = globalThis.AeroGrid ?? {};
const keys = Object.keys(api).sort().join(",");
if (keys !== "DEFAULT_BASE_URL,FUNCTIONS,configure,openStreams,version") throw new Error("globalThis.AeroGrid has " + keys);
if (Object.keys(api.FUNCTIONS).sort().join(",") !== "APPS,GRID,VALUE") throw new Error("FUNCTIONS is incomplete");`;
execFileSync(process.execPath, ["--input-type=module", "-e", probe], { stdio: "inherit" });

rmSync(final, { recursive: true, force: true });
renameSync(out, final);
process.stdout.write(`bundle: ${final} (${[...Object.keys(SCRIPTS).map((n) => `${n}.js`), ...Object.keys(PAGES)].join(", ")}, assets/)\n`);
