/** A reply a host sent, kept so that a re-sent request with the same call id gets it again. */
export interface CachedReply {
  status: 'ok' | 'err';
  payload: Uint8Array;
}

/**
 * What makes a re-send safe: a host answers a call id at most once from its pool. A request
 * whose id is running joins it; one whose id finished within `ttlMs` gets the same reply
 * again (the first reply may have been lost, e.g. across a NATS server restart). Bounded by
 * count and age; an id forgotten that way would run again, so the window is kept well above
 * how long a client re-sends (its queueTimeoutMs).
 */
export class ReplyCache {
  private readonly running = new Map<string, Promise<CachedReply>>();
  private readonly done = new Map<string, { r: CachedReply; at: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}

  get inFlight(): number {
    return this.running.size;
  }

  lookup(id: string): Promise<CachedReply> | CachedReply | undefined {
    const r = this.running.get(id);
    if (r !== undefined) return r;
    return this.done.get(id)?.r;
  }

  /** Runs `fn` for `id` once; the reply is kept for re-sends. */
  run(id: string, fn: () => Promise<CachedReply>): Promise<CachedReply> {
    const p = fn().then((r) => {
      this.running.delete(id);
      this.done.set(id, { r, at: performance.now() });
      this.prune();
      return r;
    });
    this.running.set(id, p);
    return p;
  }

  private prune(): void {
    const now = performance.now();
    for (const [id, e] of this.done) {
      if (this.done.size > this.maxEntries || now - e.at > this.ttlMs) this.done.delete(id);
      else break;
    }
  }
}
