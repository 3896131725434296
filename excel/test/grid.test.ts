import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GridState } from "../src/core/grid.js";
import { buildMatrix } from "../src/core/matrix.js";
import { DeltaSchema, SchemaSchema, SnapshotSchema } from "../src/gen/aerogrid/v1/grid_pb.js";
import { int, row } from "./helpers.js";

const schema = (epoch: string, columns = ["units_sold"]) => ({ epoch, columns: columns.map((name) => ({ name })) });

describe("GridState", () => {
  it("assembles snapshot chunks, then applies deltas and heartbeats", () => {
    const g = new GridState("ordersapp", "product_sum");
    g.applySchema(schema("e1"));
    expect(g.applySnapshot({ seq: 5n, rows: [row("tea", int(2))], complete: false })).toBe(false);
    expect(g.ready).toBe(false);
    expect(g.resumePoint()).toBeUndefined();
    expect(g.applySnapshot({ seq: 5n, rows: [row("apple", int(12))], complete: true })).toBe(true);
    expect([...g.rows.keys()]).toEqual(["tea", "apple"]);
    expect(g.resumePoint()).toEqual({ epoch: "e1", seq: 5n });

    g.applyDelta({ seq: 6n, upserts: [row("tea", int(3)), row("kiwi", int(1))], deletes: ["apple"] });
    expect(buildMatrix(g).matrix).toEqual([["key", "units_sold"], ["kiwi", 1], ["tea", 3]]);
    g.applyHeartbeat({ seq: 9n });
    g.applyHeartbeat({ seq: 7n });
    expect(g.resumePoint()).toEqual({ epoch: "e1", seq: 9n });
  });

  it("a new epoch makes the grid wait for the fresh snapshot, which replaces every row", () => {
    const g = new GridState("a", "g");
    g.applySchema(schema("e1"));
    g.applySnapshot({ seq: 3n, rows: [row("old", int(1))], complete: true });
    g.applySchema(schema("e1")); // a resume on the same epoch keeps the rows
    expect(g.ready).toBe(true);
    g.applySchema(schema("e2"));
    expect(g.ready).toBe(false);
    g.applySnapshot({ seq: 1n, rows: [row("new", int(2))], complete: true });
    expect([...g.rows.keys()]).toEqual(["new"]);
    expect(g.resumePoint()).toEqual({ epoch: "e2", seq: 1n });
  });

  it("takes the generated proto messages as they are", () => {
    const g = new GridState("a", "g");
    g.applySchema(create(SchemaSchema, { epoch: "e", columns: [{ name: "n" }] }));
    g.applySnapshot(
      create(SnapshotSchema, { seq: 1n, complete: true, rows: [{ key: "k", cells: [{ kind: { case: "intValue", value: 7n } }] }] }),
    );
    g.applyDelta(create(DeltaSchema, { seq: 2n, upserts: [{ key: "j", cells: [{}] }] }));
    expect(buildMatrix(g).matrix).toEqual([["key", "n"], ["j", ""], ["k", 7]]);
  });
});
