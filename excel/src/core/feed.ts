// One shared grid feed: a reconnecting Subscribe stream applied to a GridState, turned
// into the events formulas render. The RPC itself is injected (`subscribe`), so the
// network layer is a one-line adapter over connect-es's GridService client.
import { Backoff, Reconnector } from "./backoff.js";
import type { GridFeedEvent } from "./grid-formulas.js";
import { GridState, type RowIn, type StaleIn } from "./grid.js";
import type { Closeable, Emit } from "./registry.js";

/** A SubscribeResponse, structurally (the generated message fits). */
export interface SubscribeEvent {
  event:
    | { case: "schema"; value: { epoch: string; columns: readonly { name: string }[]; stale?: StaleIn | undefined } }
    | { case: "snapshot"; value: { seq: bigint; rows: readonly RowIn[]; complete: boolean } }
    | { case: "delta"; value: { seq: bigint; upserts: readonly RowIn[]; deletes: readonly string[] } }
    | { case: "heartbeat"; value: { seq: bigint; stale?: StaleIn | undefined } }
    | { case: undefined; value?: undefined };
}

/** The fields of a SubscribeRequest the feed sets. */
export interface SubscribeArgs {
  app: string;
  grid: string;
  resumeEpoch: string;
  resumeSeq: bigint;
}

export type SubscribeFn = (args: SubscribeArgs, signal: AbortSignal) => AsyncIterable<SubscribeEvent>;

export interface GridFeedOptions {
  subscribe: SubscribeFn;
  backoff?: () => Backoff;
}

/** A FeedOpener for SubscriptionRegistry<GridFeedEvent>. */
export function gridFeedOpener(options: GridFeedOptions) {
  return (app: string, grid: string, emit: Emit<GridFeedEvent>): Closeable => openGridFeed(app, grid, emit, options);
}

export function openGridFeed(app: string, grid: string, emit: Emit<GridFeedEvent>, options: GridFeedOptions): Closeable {
  const state = new GridState(app, grid);
  // Set while cells show "stale": the first message of a healthy stream clears it.
  let stale = false;
  const reconnector = new Reconnector({
    backoff: options.backoff?.() ?? new Backoff(),
    resumePoint: () => state.resumePoint(),
    onStatus: (status) => {
      if (status.state === "waiting") {
        stale = true;
        emit({ type: "stale", state, error: status.error });
      } else if (status.state === "failed") {
        emit({ type: "error", error: status.error });
      }
    },
    connect: async (connection) => {
      const args: SubscribeArgs = {
        app,
        grid,
        resumeEpoch: connection.resume?.epoch ?? "",
        resumeSeq: connection.resume?.seq ?? 0n,
      };
      for await (const message of options.subscribe(args, connection.signal)) {
        if (connection.signal.aborted) return;
        connection.received();
        let changed = false;
        const event = message.event;
        switch (event.case) {
          case "schema":
            state.applySchema(event.value);
            changed = state.applyStale(event.value.stale);
            break;
          case "snapshot":
            changed = state.applySnapshot(event.value);
            break;
          case "delta":
            state.applyDelta(event.value);
            changed = true;
            break;
          case "heartbeat":
            state.applyHeartbeat(event.value);
            changed = state.applyStale(event.value.stale); // degraded, or fresh again
            break;
        }
        if (state.ready && (changed || stale)) {
          stale = false;
          emit({ type: "data", state });
        }
      }
    },
  });
  reconnector.start();
  return { close: () => reconnector.stop() };
}
