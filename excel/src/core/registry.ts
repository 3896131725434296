// Formulas on the same app/grid share ONE upstream subscription, reference-counted: the
// first formula opens it, later ones join it (and get its latest event at once), and the
// last cancel closes it. Excel cancels a streaming function when its cell is edited or
// deleted or its arguments change, so cancel is the only teardown path and must be exact.

/** What an upstream feed hands to its listeners; feeds call `emit` for each event. */
export type Emit<E> = (event: E) => void;

/** An open upstream (e.g. a reconnecting gRPC-Web stream). */
export interface Closeable {
  close(): void;
}

/** Opens the upstream for one app/grid. Called once per shared subscription. */
export type FeedOpener<E> = (app: string, grid: string, emit: Emit<E>) => Closeable;

export interface Subscription {
  /** Idempotent: a second call does nothing. */
  cancel(): void;
}

interface Entry<E> {
  app: string;
  grid: string;
  listeners: Set<Emit<E>>;
  feed: Closeable | undefined;
  last: { event: E } | undefined;
  /** Changes on each (re)open, so a replaced feed's late events go nowhere. */
  generation: object;
}

export class SubscriptionRegistry<E> {
  private readonly entries = new Map<string, Entry<E>>();

  constructor(private open: FeedOpener<E>) {}

  subscribe(app: string, grid: string, listener: Emit<E>): Subscription {
    const id = registryKey(app, grid);
    let entry = this.entries.get(id);
    // Each subscription gets its own wrapper so the same function can subscribe twice.
    const own: Emit<E> = (event) => listener(event);
    if (entry === undefined) {
      const created: Entry<E> = { app, grid, listeners: new Set([own]), feed: undefined, last: undefined, generation: {} };
      entry = created;
      this.entries.set(id, created);
      this.start(id, created);
    } else {
      entry.listeners.add(own);
      if (entry.last !== undefined) own(entry.last.event);
    }
    const joined = entry;
    let cancelled = false;
    return {
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        joined.listeners.delete(own);
        if (joined.listeners.size === 0 && this.entries.get(id) === joined) {
          this.entries.delete(id);
          joined.feed?.close();
        }
      },
    };
  }

  /** Number of formulas on this app/grid (0 when no upstream is open). */
  refCount(app: string, grid: string): number {
    return this.entries.get(registryKey(app, grid))?.listeners.size ?? 0;
  }

  /** Number of open upstreams. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Moves every subscription to a feed from `open` (an endpoint change): the formulas stay
   * subscribed and get the new feed's events, with no recalculation by Excel.
   */
  reopen(open: FeedOpener<E>): void {
    this.open = open;
    for (const [id, entry] of [...this.entries]) {
      const old = entry.feed;
      entry.generation = {}; // before close: the old feed may emit while closing
      entry.feed = undefined;
      entry.last = undefined;
      old?.close();
      if (this.entries.get(id) === entry) this.start(id, entry);
    }
  }

  private start(id: string, entry: Entry<E>): void {
    const generation = {};
    entry.generation = generation;
    const live = (): boolean => this.entries.get(id) === entry && entry.generation === generation;
    const feed = this.open(entry.app, entry.grid, (event) => {
      if (!live()) return; // closed or replaced: late events go nowhere
      entry.last = { event };
      for (const l of [...entry.listeners]) l(event);
    });
    // The last cancel or closeAll may have run during a synchronous first emit.
    if (live()) entry.feed = feed;
    else feed.close();
  }

  /** Closes every upstream (add-in shutdown). */
  closeAll(): void {
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) {
      e.listeners.clear();
      e.feed?.close();
    }
  }
}

// App and grid names cannot contain NUL, so the pair maps to one key unambiguously.
function registryKey(app: string, grid: string): string {
  return `${app}\u0000${grid}`;
}
