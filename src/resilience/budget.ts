import { DEFAULTS } from '../defaults.js';
import { realClock, type Clock } from '../util/clock.js';

export interface RetryBudgetOptions {
  /** Retries allowed as a fraction of first attempts seen in the window (default 0.2, as Finagle). */
  ratio?: number;
  /** Length of the sliding window in ms (default 10_000). */
  windowMs?: number;
  /** Retries always allowed per second of window, however few calls there were (default 10). */
  minRetriesPerSecond?: number;
  /** Time buckets the window is cut into (default 10): the window slides one bucket at a time. */
  buckets?: number;
  clock?: Clock;
}

export interface RetryBudgetStats {
  /** First attempts recorded in the window. */
  calls: number;
  /** Retries granted in the window. */
  retries: number;
  /** Retries the budget allows in the window right now: floor + ratio * calls. */
  allowed: number;
  /** How many more retries would be granted now. */
  remaining: number;
  /** Retries refused since the budget was created. */
  denied: number;
  ratio: number;
  windowMs: number;
  minRetries: number;
}

/**
 * A retry budget, as in Finagle and Envoy: within a sliding window, retries may be at most
 * `ratio` of the calls seen, plus a floor of `minRetriesPerSecond * windowMs / 1000`, so a
 * failing backend sees at most (1 + ratio) times its normal load instead of a retry storm.
 *
 * Counts live in `buckets` time buckets with running totals: recording is O(1), sliding
 * clears only the buckets that fell out of the window.
 */
export class RetryBudget {
  readonly ratio: number;
  readonly windowMs: number;
  readonly minRetries: number;
  private readonly clock: Clock;
  private readonly bucketMs: number;
  private readonly n: number;
  private readonly callCounts: Float64Array;
  private readonly retryCounts: Float64Array;
  /** Absolute index (floor(now / bucketMs)) of the newest bucket. */
  private head: number;
  private totalCalls = 0;
  private totalRetries = 0;
  private deniedCount = 0;

  constructor(options: RetryBudgetOptions = {}) {
    const d = DEFAULTS.retryBudget;
    const ratio = options.ratio ?? d.ratio;
    const windowMs = options.windowMs ?? d.windowMs;
    const minPerSec = options.minRetriesPerSecond ?? d.minRetriesPerSecond;
    const buckets = options.buckets ?? d.buckets;
    if (!(ratio >= 0) || !Number.isFinite(ratio)) throw new RangeError(`RetryBudget ratio must be a finite number >= 0, got ${ratio}`);
    if (!(windowMs > 0) || !Number.isFinite(windowMs)) throw new RangeError(`RetryBudget windowMs must be a finite number > 0, got ${windowMs}`);
    if (!(minPerSec >= 0) || !Number.isFinite(minPerSec)) throw new RangeError(`RetryBudget minRetriesPerSecond must be a finite number >= 0, got ${minPerSec}`);
    if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`RetryBudget buckets must be an integer >= 1, got ${buckets}`);
    this.ratio = ratio;
    this.windowMs = windowMs;
    this.minRetries = (minPerSec * windowMs) / 1000;
    this.clock = options.clock ?? realClock;
    this.n = buckets;
    this.bucketMs = windowMs / buckets;
    this.callCounts = new Float64Array(buckets);
    this.retryCounts = new Float64Array(buckets);
    this.head = Math.floor(this.clock.now() / this.bucketMs);
  }

  /** Records a first attempt (one per call, not per retry). */
  recordCall(): void {
    this.callCounts[this.current()]++;
    this.totalCalls++;
  }

  /** True, and records the retry, when the budget allows one more retry now; false otherwise. */
  tryAcquireRetry(): boolean {
    const k = this.current();
    if (this.totalRetries + 1 > this.minRetries + this.ratio * this.totalCalls) {
      this.deniedCount++;
      return false;
    }
    this.retryCounts[k]++;
    this.totalRetries++;
    return true;
  }

  stats(): RetryBudgetStats {
    this.current();
    const allowed = Math.floor(this.minRetries + this.ratio * this.totalCalls + 1e-9);
    return {
      calls: this.totalCalls,
      retries: this.totalRetries,
      allowed,
      remaining: Math.max(0, allowed - this.totalRetries),
      denied: this.deniedCount,
      ratio: this.ratio,
      windowMs: this.windowMs,
      minRetries: this.minRetries,
    };
  }

  /** Forgets everything recorded. */
  reset(): void {
    this.callCounts.fill(0);
    this.retryCounts.fill(0);
    this.totalCalls = 0;
    this.totalRetries = 0;
    this.deniedCount = 0;
    this.head = Math.floor(this.clock.now() / this.bucketMs);
  }

  /** Slot of the newest bucket after sliding the window to now. A clock that went backwards keeps counting in the newest bucket. */
  private current(): number {
    const b = Math.floor(this.clock.now() / this.bucketMs);
    if (b > this.head) this.slide(b);
    return mod(this.head, this.n);
  }

  /** Moves the head to bucket `b`, clearing the buckets that fell out of the window. */
  private slide(b: number): void {
    const steps = b - this.head;
    if (steps >= this.n) {
      this.callCounts.fill(0);
      this.retryCounts.fill(0);
      this.totalCalls = 0;
      this.totalRetries = 0;
    } else {
      for (let i = this.head + 1; i <= b; i++) {
        const k = mod(i, this.n);
        this.totalCalls -= this.callCounts[k];
        this.totalRetries -= this.retryCounts[k];
        this.callCounts[k] = 0;
        this.retryCounts[k] = 0;
      }
    }
    this.head = b;
  }
}

function mod(i: number, n: number): number {
  const r = i % n;
  return r < 0 ? r + n : r;
}
