#!/usr/bin/env node
// Writes dist/functions.json (Excel's custom-function metadata) from the JSDoc of
// src/excel-functions.ts with custom-functions-metadata, and FAILS on any error (its CLI prints
// errors but exits 0) or when a function the add-in registers is missing from it.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import metadata from "custom-functions-metadata";

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const source = join(here, "src", "excel-functions.ts");
const output = join(here, "dist", "functions.json");
const EXPECTED = ["GRID", "VALUE", "APPS"]; // FUNCTIONS in src/excel-functions.ts

const result = await metadata.generateCustomFunctionsMetadata(source, false);
if (result.errors.length > 0) {
  process.stderr.write(`metadata: ${source}:\n  ${result.errors.join("\n  ")}\n`);
  process.exit(1);
}
const json = JSON.parse(result.metadataJson);
const ids = json.functions.map((f) => f.id);
const missing = EXPECTED.filter((id) => !ids.includes(id));
const notStreaming = json.functions.filter((f) => !f.options?.stream).map((f) => f.id);
if (missing.length > 0 || notStreaming.length > 0) {
  process.stderr.write(`metadata: missing ${missing.join(", ") || "-"}; not streaming ${notStreaming.join(", ") || "-"}\n`);
  process.exit(1);
}
mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, JSON.stringify(json, null, 2) + "\n");
process.stdout.write(`metadata: ${output} (${ids.join(", ")})\n`);
