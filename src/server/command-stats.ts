/** What the dashboard shows per command: its rate, and its latency over the recent calls. */
export interface CommandRow {
  command: string;
  /** Calls ended per second over the last sample. */
  perSecond: number;
  /** Latency percentiles of the recent calls (the last `keep`, within `windowMs`), null without any. */
  p50Ms: number | null;
  p99Ms: number | null;
  calls: number;
  errors: number;
}

interface Command {
  calls: number;
  errors: number;
  /** Calls at the last sample, for the rate. */
  sampled: number;
  perSecond: number;
  /** A ring of the last calls' end times and durations. */
  at: Float64Array;
  ms: Float64Array;
  next: number;
}

/**
 * Per-command counts, rate and latency for the live dashboard, from `call:end`: a call costs two
 * stores in a ring, percentiles are computed once per snapshot from the calls still in the window.
 */
export class CommandStats {
  private readonly commands = new Map<string, Command>();
  private sampledAt = performance.now();

  constructor(
    private readonly keep = 1000,
    private readonly windowMs = 60_000,
  ) {}

  ended(command: string, ok: boolean, durationMs: number): void {
    let c = this.commands.get(command);
    if (c === undefined) {
      c = { calls: 0, errors: 0, sampled: 0, perSecond: 0, at: new Float64Array(this.keep).fill(-Infinity), ms: new Float64Array(this.keep), next: 0 };
      this.commands.set(command, c);
    }
    c.calls++;
    if (!ok) c.errors++;
    c.at[c.next] = performance.now();
    c.ms[c.next] = durationMs;
    c.next = (c.next + 1) % this.keep;
  }

  /** Takes the rates since the last sample. */
  sample(): void {
    const now = performance.now();
    const s = (now - this.sampledAt) / 1000;
    if (s <= 0) return;
    this.sampledAt = now;
    for (const c of this.commands.values()) {
      c.perSecond = (c.calls - c.sampled) / s;
      c.sampled = c.calls;
    }
  }

  rows(): CommandRow[] {
    const since = performance.now() - this.windowMs;
    const out: CommandRow[] = [];
    for (const [command, c] of this.commands) {
      const recent: number[] = [];
      for (let i = 0; i < this.keep; i++) if (c.at[i] >= since) recent.push(c.ms[i]);
      recent.sort((a, b) => a - b);
      const pct = (p: number): number | null => (recent.length === 0 ? null : round(recent[Math.min(recent.length - 1, Math.ceil(p * recent.length) - 1)]));
      out.push({ command, perSecond: Math.round(c.perSecond * 10) / 10, p50Ms: pct(0.5), p99Ms: pct(0.99), calls: c.calls, errors: c.errors });
    }
    return out.sort((a, b) => (a.command < b.command ? -1 : 1));
  }
}

function round(ms: number): number {
  return ms < 10 ? Math.round(ms * 100) / 100 : Math.round(ms);
}
