import { readFileSync } from 'node:fs';

/**
 * The side-effect ledger of non-idempotent calls: each one appends its token to a file when it
 * runs. Read against what the caller saw, it tells whether anything ran twice, whether a success
 * did not run, and whether a failure said "not taken" of a call that ran.
 */
export interface LedgerTokens {
  /** Every token sent. */
  sent: ReadonlySet<string>;
  /** Tokens whose call succeeded. */
  succeeded: ReadonlySet<string>;
  /** Tokens whose call failed, with the error's `taken`. */
  failed: ReadonlyMap<string, boolean>;
}

export interface LedgerAudit {
  duplicateSideEffects: number;
  missingSideEffects: number;
  /** Failed calls that ran anyway (allowed when the error said the call may have run). */
  failedButRan: number;
  /** Failed calls that ran although the error said no worker took them: a lie. */
  ranButReportedNotTaken: number;
  /** Lines that are no token we sent. */
  ledgerCorruptLines: number;
}

export function auditLedger(file: string, t: LedgerTokens): LedgerAudit {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // no record call ran
  }
  const seen = new Map<string, number>();
  let ledgerCorruptLines = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (!t.sent.has(line)) ledgerCorruptLines++;
    else seen.set(line, (seen.get(line) ?? 0) + 1);
  }
  let duplicateSideEffects = 0;
  for (const n of seen.values()) if (n > 1) duplicateSideEffects++;
  let missingSideEffects = 0;
  for (const tok of t.succeeded) if (!seen.has(tok)) missingSideEffects++;
  let failedButRan = 0;
  let ranButReportedNotTaken = 0;
  for (const [tok, taken] of t.failed) {
    if (!seen.has(tok)) continue;
    failedButRan++;
    if (!taken) ranButReportedNotTaken++;
  }
  return { duplicateSideEffects, missingSideEffects, failedButRan, ranButReportedNotTaken, ledgerCorruptLines };
}

/** SIGKILLs what was left behind (after counting it as orphans). */
export function reap(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}
