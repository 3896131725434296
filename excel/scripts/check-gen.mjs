#!/usr/bin/env node
// Fails (exit 1) when src/gen/ is not what `npm run gen` would write from ../proto now:
// generates into a temporary folder and compares file by file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const committed = join(here, "src", "gen");

function files(root) {
  const out = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(root, path), readFileSync(path, "utf8"));
    }
  };
  try {
    walk(root);
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "aerogrid-gen-"));
try {
  execFileSync(join(here, "node_modules", ".bin", "buf"), ["generate", "--output", tmp], {
    cwd: here,
    stdio: "inherit",
    // buf finds protoc-gen-es on the PATH.
    env: { ...process.env, PATH: `${join(here, "node_modules", ".bin")}:${process.env.PATH}` },
  });
  const want = files(join(tmp, "src", "gen"));
  const have = files(committed);
  const stale = [...new Set([...want.keys(), ...have.keys()])]
    .filter((name) => want.get(name) !== have.get(name))
    .sort();
  if (stale.length > 0) {
    console.error(`excel/src/gen is stale (run 'npm run gen' in excel/): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`excel/src/gen is up to date (${want.size} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
