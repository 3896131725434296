import { describe, expect, it } from "vitest";
import { ArgumentError } from "../src/core/errors.js";
import { DEFAULT_OPTIONS, parseColumns, parseOptions } from "../src/core/options.js";

describe("parseColumns", () => {
  it("reads text, a range or nothing", () => {
    expect(parseColumns(undefined)).toEqual([]);
    expect(parseColumns(null)).toEqual([]);
    expect(parseColumns(" a, b ,,c")).toEqual(["a", "b", "c"]);
    expect(parseColumns([["a", "b"], ["c", null]])).toEqual(["a", "b", "c"]);
  });
});

describe("parseOptions", () => {
  it("defaults when omitted", () => {
    expect(parseOptions(undefined)).toEqual(DEFAULT_OPTIONS);
    expect(parseOptions(null).intervalMs).toBe(250);
  });

  it("reads every option, case-insensitively", () => {
    expect(parseOptions("Order=Insertion; decimals=text;interval=1000; header=false; keys=a|b ;")).toEqual({
      order: "insertion",
      decimals: "text",
      intervalMs: 1000,
      header: false,
      keys: ["a", "b"],
    });
  });

  it("explains what is wrong", () => {
    expect(() => parseOptions("colour=red")).toThrow(ArgumentError);
    expect(() => parseOptions("colour=red")).toThrow(/unknown option "colour"; options are name=value pairs/);
    expect(() => parseOptions("order=random")).toThrow('option order must be key or insertion, got "random"');
    expect(() => parseOptions("interval=-5")).toThrow(/interval must be a whole number of ms/);
    expect(() => parseOptions("interval")).toThrow(/option "interval" has no value/);
    expect(() => parseOptions([["a"]])).toThrow(/options must be text/);
  });
});
