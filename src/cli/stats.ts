/** Latency samples (ms) and their percentiles, nearest-rank. */
export class Latencies {
  private readonly samples: number[] = [];
  private sorted: number[] | null = null;

  add(ms: number): void {
    this.samples.push(ms);
    this.sorted = null;
  }

  get count(): number {
    return this.samples.length;
  }

  /** The p-th percentile (0..100), nearest rank; 0 with no samples. */
  percentile(p: number): number {
    if (this.samples.length === 0) return 0;
    this.sorted ??= [...this.samples].sort((a, b) => a - b);
    const rank = Math.ceil((p / 100) * this.sorted.length);
    return this.sorted[Math.min(this.sorted.length - 1, Math.max(0, rank - 1))];
  }

  get max(): number {
    return this.percentile(100);
  }

  summary(): { p50: number; p99: number; max: number } {
    return { p50: round(this.percentile(50)), p99: round(this.percentile(99)), max: round(this.max) };
  }
}

/** Rounds ms for display: 3 significant decimals below 10, 1 below 1000, none above. */
export function round(ms: number): number {
  if (ms < 10) return Math.round(ms * 1000) / 1000;
  if (ms < 1000) return Math.round(ms * 10) / 10;
  return Math.round(ms);
}

/** Renders rows as an aligned text table; numbers are right-aligned. */
export function table(header: string[], rows: Array<Array<string | number>>, indent = ''): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? formatNumber(c) : c)))];
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || r[i] === '-'));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      indent +
      r
        .map((c, i) => (numeric[i] && i > 0 ? (c ?? '').padStart(widths[i]) : (c ?? '').padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : String(round(n));
}
