// The client's copy of one grid, rebuilt from a subscription's events: Schema, Snapshot
// chunks, Deltas, Heartbeats. Shared by every formula on the grid; each builds its own
// matrix from it. Types are structural so that generated proto messages fit directly.
// The Schema and every Heartbeat also say whether the app is degraded (`Stale`): its
// values are its last committed state and may be out of date.

/** A cell, shaped like the generated `Value["kind"]` oneof; an unset case is null. */
export type Cell =
  | { case: "boolValue"; value: boolean }
  | { case: "intValue"; value: bigint }
  | { case: "floatValue"; value: number }
  | { case: "stringValue"; value: string }
  | { case: "decimalValue"; value: string }
  | { case: "timestampValue"; value: { seconds: bigint; nanos: number } }
  | { case: undefined; value?: undefined };

export interface RowIn {
  key: string;
  cells: readonly { kind: Cell }[];
}

/** The proto's `Stale`: present while the app cannot update its grids. */
export interface StaleIn {
  reason: string;
}

export interface ResumePoint {
  epoch: string;
  seq: bigint;
}

export class GridState {
  columns: string[] = [];
  /** Rows by key; Map iteration order is first-insertion order (kept across updates). */
  rows = new Map<string, Cell[]>();
  epoch = "";
  /** The last sequence number fully applied (resume from here). */
  seq = 0n;
  /** True once a complete snapshot has been applied on the current epoch. */
  ready = false;
  /** Why the app says its values may be out of date; undefined while they are current. */
  staleReason: string | undefined;
  private chunks: Map<string, Cell[]> | undefined;

  constructor(
    readonly app: string,
    readonly grid: string,
  ) {}

  /** Where a reconnect should resume; undefined before the first complete snapshot. */
  resumePoint(): ResumePoint | undefined {
    return this.ready ? { epoch: this.epoch, seq: this.seq } : undefined;
  }

  applySchema(schema: { columns: readonly { name: string }[]; epoch: string }): void {
    const columns = schema.columns.map((c) => c.name);
    if (schema.epoch !== this.epoch || !sameColumns(columns, this.columns)) {
      // Old rows are meaningless under a new epoch or column layout: a snapshot follows.
      this.ready = false;
    }
    this.columns = columns;
    this.epoch = schema.epoch;
    this.chunks = undefined;
  }

  /** Returns true when the snapshot is complete (the grid changed). */
  applySnapshot(snapshot: { seq: bigint; rows: readonly RowIn[]; complete: boolean }): boolean {
    const chunks = (this.chunks ??= new Map());
    for (const row of snapshot.rows) chunks.set(row.key, row.cells.map((c) => c.kind));
    if (!snapshot.complete) return false;
    this.rows = chunks;
    this.chunks = undefined;
    this.seq = snapshot.seq;
    this.ready = true;
    return true;
  }

  applyDelta(delta: { seq: bigint; upserts: readonly RowIn[]; deletes: readonly string[] }): void {
    for (const key of delta.deletes) this.rows.delete(key);
    for (const row of delta.upserts) this.rows.set(row.key, row.cells.map((c) => c.kind));
    this.seq = delta.seq;
  }

  applyHeartbeat(heartbeat: { seq: bigint }): void {
    if (this.ready && heartbeat.seq > this.seq) this.seq = heartbeat.seq;
  }

  /** Takes `stale` from a Schema or Heartbeat (absent: fresh); true when it changed. */
  applyStale(stale: StaleIn | undefined): boolean {
    const reason = stale === undefined ? undefined : stale.reason;
    if (reason === this.staleReason) return false;
    this.staleReason = reason;
    return true;
  }
}

function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, i) => name === b[i]);
}
