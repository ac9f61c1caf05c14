import { createHash } from 'node:crypto';
import type { PoolError } from '../errors/pool-error.js';

/**
 * Only a death the call caused counts toward poison: not one its pool caused (a kill, a stop:
 * `byPool`) nor a fault chaos injected (`fault`, set by the pool that injected it).
 */
export function causedDeath(err: PoolError): boolean {
  const d = err.details;
  return err.code === 'PYFLEET_WORKER_CRASHED' && d?.running === true && d.byPool !== true && d.fault === undefined;
}

/**
 * Quarantine for calls that kill the worker running them. A call is identified by its command
 * and a hash of its arguments; after `maxDeaths` deaths the call is refused for `coolDownMs`,
 * so one bad input cannot take every worker down in turn.
 */
export class PoisonTracker {
  private readonly deaths = new Map<string, { count: number; at: number; last: number | null }>();
  private readonly quarantine = new Map<string, number>();

  constructor(
    private readonly maxDeaths: number,
    private readonly coolDownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The call's identity: its command and a hash of its arguments (binary parts included). */
  static key(command: string, argsJson: string, parts: readonly { data: ArrayBufferView }[] = []): string {
    const h = createHash('sha1').update(argsJson);
    for (const p of parts) h.update(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength));
    return `${command}:${h.digest('base64url')}`;
  }

  /** How long a death is remembered: one long ago does not make today's call poison. */
  private get memoryMs(): number {
    return Math.max(this.coolDownMs, 60_000);
  }

  /**
   * Records that this call was running when worker `death` died; true when it is now quarantined.
   * Several calls with the same arguments running on one worker (concurrency) are one death for
   * that key: a call is poison only when it was present at `maxDeaths` different deaths.
   */
  recordDeath(key: string, death: number | null = null): boolean {
    const t = this.now();
    const d = this.deaths.get(key);
    const recent = d !== undefined && t - d.at < this.memoryMs;
    if (recent && death !== null && d.last === death) return false;
    const count = recent ? d.count + 1 : 1;
    this.deaths.set(key, { count, at: t, last: death });
    if (count >= this.maxDeaths) {
      this.deaths.delete(key);
      this.quarantine.set(key, t + this.coolDownMs);
      return true;
    }
    return false;
  }

  /** Ms left in quarantine for this key, or 0. Cheap when nothing is quarantined. */
  quarantinedFor(key: string): number {
    const until = this.quarantine.get(key);
    if (until === undefined) return 0;
    const left = until - this.now();
    if (left <= 0) {
      this.quarantine.delete(key);
      return 0;
    }
    return left;
  }

  /** Forgets deaths older than the memory and quarantines that ended (the pool calls it on its tick). */
  purge(): void {
    const t = this.now();
    for (const [k, d] of this.deaths) if (t - d.at >= this.memoryMs) this.deaths.delete(k);
    for (const [k, until] of this.quarantine) if (until <= t) this.quarantine.delete(k);
  }

  /** Deaths remembered (for tests of the expiry). */
  get remembered(): number {
    return this.deaths.size;
  }

  get active(): boolean {
    return this.quarantine.size > 0;
  }

  get size(): number {
    return this.quarantine.size;
  }
}
