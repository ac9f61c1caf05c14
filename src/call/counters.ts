import { ERROR_CATEGORIES, type ErrorCategory } from '../errors/categories.js';
import type { Via } from './types.js';

export interface CallCounts {
  total: number;
  succeeded: number;
  failed: number;
  inFlight: number;
  retries: number;
  viaRecovery: number;
  viaFallback: number;
  /** Settlements refused because the call had already settled: a pyfleet bug if ever above 0. */
  settledTwice: number;
}

/** The pool's running counts, as `stats()` shows them. */
export class Counters {
  readonly calls: CallCounts = { total: 0, succeeded: 0, failed: 0, inFlight: 0, retries: 0, viaRecovery: 0, viaFallback: 0, settledTwice: 0 };
  readonly errorsByCategory = Object.fromEntries(ERROR_CATEGORIES.map((c) => [c, 0])) as Record<ErrorCategory, number>;
  readonly restarts = { total: 0, byReason: {} as Record<string, number> };
  poisonRefused = 0;
  /** Bytes of binary parts sent to the workers (every attempt) and received in results and items. */
  readonly binary = { toPython: 0, fromPython: 0 };

  started(): void {
    this.calls.total++;
    this.calls.inFlight++;
  }

  settled(ok: boolean, via: Via): void {
    this.calls.inFlight--;
    if (!ok) {
      this.calls.failed++;
      return;
    }
    this.calls.succeeded++;
    if (via === 'fallback') this.calls.viaFallback++;
    else if (via === 'recovery') this.calls.viaRecovery++;
  }

  restart(reason: string): void {
    this.restarts.total++;
    this.restarts.byReason[reason] = (this.restarts.byReason[reason] ?? 0) + 1;
  }

  snapshot() {
    return {
      calls: { ...this.calls },
      errorsByCategory: { ...this.errorsByCategory },
      restarts: { total: this.restarts.total, byReason: { ...this.restarts.byReason } },
    };
  }
}
