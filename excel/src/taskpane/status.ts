// The connection status the task pane shows, from the catalog watch's reconnector.
import type { ConnectionStatus } from "../core/backoff.js";
import { toCellText } from "../core/errors.js";

export type PaneState = "connecting" | "connected" | "reconnecting" | "error";

export interface PaneStatus {
  state: PaneState;
  /** The last error, readable (without the "AeroGrid: " prefix of cells). */
  error?: string;
  /** While reconnecting: the wait before the next attempt. */
  retryInMs?: number;
}

export const INITIAL_STATUS: PaneStatus = { state: "connecting" };

export function errorText(error: unknown): string {
  return toCellText(error).replace(/^AeroGrid: /, "");
}

/** The next status; `previous` keeps the last error visible while a retry connects. */
export function nextStatus(previous: PaneStatus, status: ConnectionStatus): PaneStatus {
  switch (status.state) {
    case "connecting":
      if (status.attempt === 0 && previous.state !== "reconnecting") return { state: "connecting" };
      return previous.error === undefined ? { state: "reconnecting" } : { state: "reconnecting", error: previous.error };
    case "connected":
      return { state: "connected" };
    case "waiting":
      return { state: "reconnecting", error: errorText(status.error), retryInMs: status.delayMs };
    case "failed":
      return { state: "error", error: errorText(status.error) };
    case "stopped":
      return previous;
  }
}

export function statusText(status: PaneStatus): string {
  switch (status.state) {
    case "connecting":
      return "Connecting…";
    case "connected":
      return "Connected";
    case "reconnecting": {
      const wait = status.retryInMs === undefined ? "" : ` in ${Math.max(1, Math.round(status.retryInMs / 1000))} s`;
      return status.error === undefined ? `Reconnecting${wait}…` : `Reconnecting${wait}: ${status.error}`;
    }
    case "error":
      return `Error: ${status.error ?? "unknown error"}`;
  }
}

export function streamsText(open: number): string {
  return open === 1 ? "1 open stream" : `${open} open streams`;
}
