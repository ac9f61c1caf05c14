/** After a reconnect, hosts are still re-subscribing: "no responder" is not yet proof of death. */
const RECONNECT_GRACE_MS = 3_000;

/**
 * What the fleet client's parts share of its state: the NATS connection (set by the Fleet from
 * the connection's status), whether it is closing, and a way to wait for any change of these or
 * of the host table.
 */
export class ClientState {
  connected = true;
  reconnectedAt = -Infinity;
  readonly connectedAt = performance.now();
  closing = false;
  private readonly waiters = new Set<() => void>();

  /** Just reconnected: hosts may not have re-subscribed yet. */
  inReconnectGrace(now: number): boolean {
    return now - this.reconnectedAt < RECONNECT_GRACE_MS;
  }

  wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** Resolves on the next change of the host table or the connection, or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}
