import type { LedgerAudit } from './ledger.js';
import type { ChaosMix } from './mix.js';

export interface Invariant {
  name: string;
  ok: boolean;
  value: number;
  /** What it must be, in words ('0', '>= 0.99'). */
  expected: string;
  /** Why it was not checked, if it was not. */
  skipped?: string;
}

export const zero = (name: string, value: number): Invariant => ({ name, ok: value === 0, value, expected: '0' });

/** What must never happen, for a pool and for a fleet alike: each must be 0. */
export function neverInvariants(o: { lost: number; answeredTwice: number; settledTwice: number; audit: LedgerAudit; mix: ChaosMix; orphans: number }): Invariant[] {
  return [
    zero('lost', o.lost),
    zero('answeredTwice', o.answeredTwice),
    zero('settledTwice', o.settledTwice),
    zero('duplicateSideEffects', o.audit.duplicateSideEffects),
    zero('missingSideEffects', o.audit.missingSideEffects),
    zero('ranButReportedNotTaken', o.audit.ranButReportedNotTaken),
    zero('ledgerCorruptLines', o.audit.ledgerCorruptLines),
    zero('wrongAnswers', o.mix.wrongAnswers),
    zero('sessionStateErrors', o.mix.sessionStateErrors),
    zero('streamBrokenMislabelled', o.mix.streamBrokenMislabelled),
    zero('nonPoolErrors', o.mix.nonPoolErrors),
    zero('orphans', o.orphans),
  ];
}
