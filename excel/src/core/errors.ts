// Every failure becomes one line of readable text for a cell: users see cells, not consoles.

/** An error whose message is already written for a user reading a cell. */
export class AeroGridError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AeroGridError";
  }
}

/** A bad formula argument (unknown option, unknown column...). Retrying will not help. */
export class ArgumentError extends AeroGridError {
  constructor(message: string) {
    super(message);
    this.name = "ArgumentError";
  }
}

/** The spilled result would exceed Excel's payload limit. */
export class PayloadTooLargeError extends AeroGridError {
  constructor(
    message: string,
    readonly estimatedBytes: number,
    readonly limitBytes: number,
  ) {
    super(message);
    this.name = "PayloadTooLargeError";
  }
}

// gRPC / Connect status codes (the numbers are fixed by the gRPC spec), so core needs no
// import of @connectrpc/connect to read a ConnectError.
const CODE_TEXT: Record<number, string> = {
  1: "the request was canceled",
  2: "the server failed",
  3: "the server refused an argument",
  4: "the server did not answer in time",
  5: "not found",
  7: "permission denied: your token does not give access to this",
  8: "the server dropped the stream (it fell behind, or the server is overloaded)",
  9: "the server is not ready",
  12: "the server does not support this",
  13: "the server failed",
  14: "the endpoint is unreachable",
  16: "not signed in, or the token has expired",
};

/**
 * Codes worth retrying (with backoff). The runtime's status table (aerogrid.server.errors,
 * `Code.retryable`: deadline_exceeded 4, internal 13, unavailable 14) less canceled (1:
 * here that is Excel cancelling the formula), plus unknown (2: connect-web's code for a
 * broken fetch or body) and resource_exhausted (8: the server is at its cap or dropped a
 * stream that fell behind; a cell waits for a slot). tests/runtime/unit/test_status_codes.py
 * checks this list against the table.
 */
const RETRYABLE_CODES: ReadonlySet<number> = new Set([2, 4, 8, 13, 14]);

/** Whether retrying (with backoff) may fix this error. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof AeroGridError) return false;
  const code = rpcCode(err);
  if (code === undefined) return true; // network failures (fetch TypeError) and the like
  return RETRYABLE_CODES.has(code);
}

function rpcCode(err: unknown): number | undefined {
  if (typeof err === "object" && err !== null && "code" in err && "rawMessage" in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === "number" ? code : undefined;
  }
  return undefined;
}

// The browsers' and Node's messages of a fetch that never reached a server.
const FETCH_FAILED = /^(failed to fetch|fetch failed|load failed|networkerror when attempting to fetch resource\.?)$/i;

const MAX_CELL_TEXT = 255; // keep the message readable in a cell, not a wall of text

/** One line of text for a cell, prefixed so users can tell it is AeroGrid talking. */
export function toCellText(err: unknown): string {
  let text: string;
  const code = rpcCode(err);
  if (err instanceof AeroGridError) {
    text = err.message;
  } else if (code !== undefined) {
    const raw = String((err as { rawMessage: unknown }).rawMessage ?? "").trim();
    // connect-web reports a failed fetch (no server, CORS, TLS) as Unknown, not Unavailable.
    const unreachable = code === 2 && FETCH_FAILED.test(raw);
    const what = unreachable ? (CODE_TEXT[14] as string) : (CODE_TEXT[code] ?? `error code ${code}`);
    text = raw && raw.toLowerCase() !== what ? `${what} (${raw})` : what;
  } else if (err instanceof Error) {
    text = err.message || err.name;
  } else if (typeof err === "string") {
    text = err;
  } else {
    text = "unknown error";
  }
  text = `AeroGrid: ${text.replace(/\s+/g, " ").trim()}`;
  return text.length > MAX_CELL_TEXT ? `${text.slice(0, MAX_CELL_TEXT - 1)}…` : text;
}
