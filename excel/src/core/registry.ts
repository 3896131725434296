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
  listeners: Set<Emit<E>>;
  feed: Closeable | undefined;
  last: { event: E } | undefined;
}

export class SubscriptionRegistry<E> {
  private readonly entries = new Map<string, Entry<E>>();

  constructor(private readonly open: FeedOpener<E>) {}

  subscribe(app: string, grid: string, listener: Emit<E>): Subscription {
    const id = registryKey(app, grid);
    let entry = this.entries.get(id);
    // Each subscription gets its own wrapper so the same function can subscribe twice.
    const own: Emit<E> = (event) => listener(event);
    if (entry === undefined) {
      const created: Entry<E> = { listeners: new Set([own]), feed: undefined, last: undefined };
      entry = created;
      this.entries.set(id, created);
      created.feed = this.open(app, grid, (event) => {
        if (this.entries.get(id) !== created) return; // closed: late events go nowhere
        created.last = { event };
        for (const l of [...created.listeners]) l(event);
      });
      // closeAll may have run during a synchronous first emit, before `feed` was set.
      if (this.entries.get(id) !== created) created.feed.close();
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

  /** Closes every upstream (add-in shutdown or endpoint change). */
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
