import type { Registry } from 'prom-client';

/**
 * A counter and a histogram for the per-call hot path, registered on a prom-client `Registry`
 * as ordinary metrics (the registry asks each for `get()` at scrape time, in prom-client's own
 * format). prom-client's `inc`/`observe` hash the label object on every call (about 0.4 µs each
 * here); these resolve a label set once into a series record, after which a call is a few
 * additions.
 */

type Labels = Record<string, string>;

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

interface MetricObject {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}

function keyOf(labelNames: readonly string[], labels: Labels): string {
  let k = '';
  for (const n of labelNames) k += `${labels[n] ?? ''}\u0000`;
  return k;
}

function pick(labelNames: readonly string[], labels: Labels): Labels {
  const out: Labels = {};
  for (const n of labelNames) {
    const v = labels[n];
    if (v === undefined) throw new Error(`label ${n} is missing`);
    out[n] = v;
  }
  return out;
}

abstract class FastMetric<S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  protected readonly series = new Map<string, { labels: Labels; s: S }>();

  constructor(o: { name: string; help: string; labelNames: readonly string[]; registers: Registry[] }) {
    this.name = o.name;
    this.help = o.help;
    this.labelNames = o.labelNames;
    for (const r of o.registers) r.registerMetric(this as never);
  }

  protected abstract fresh(): S;

  protected resolve(labels: Labels): S {
    const k = keyOf(this.labelNames, labels);
    let e = this.series.get(k);
    if (e === undefined) {
      e = { labels: pick(this.labelNames, labels), s: this.fresh() };
      this.series.set(k, e);
    }
    return e.s;
  }

  /** Drops the series with exactly these labels. */
  remove(labels: Labels): void {
    this.series.delete(keyOf(this.labelNames, labels));
  }

  /** Drops every series whose labels include all of `partial`. */
  removeMatching(partial: Labels): void {
    for (const [k, e] of this.series) if (Object.entries(partial).every(([n, v]) => e.labels[n] === v)) this.series.delete(k);
  }

  reset(): void {
    this.series.clear();
  }
}

export class FastCounter extends FastMetric<{ value: number }> {
  readonly type = 'counter' as const;

  protected fresh(): { value: number } {
    return { value: 0 };
  }

  /** A handle on one label set: `inc()` costs one addition. */
  child(labels: Labels): { inc(n?: number): void } {
    const s = this.resolve(labels);
    return {
      inc(n = 1) {
        s.value += n;
      },
    };
  }

  inc(labels: Labels, n = 1): void {
    this.resolve(labels).value += n;
  }

  async get(): Promise<MetricObject> {
    return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values: [...this.series.values()].map((e) => ({ labels: { ...e.labels }, value: e.s.value })) };
  }
}

interface HistogramSeries {
  /** Non-cumulative counts per bucket; the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export class FastHistogram extends FastMetric<HistogramSeries> {
  readonly type = 'histogram' as const;
  readonly upperBounds: readonly number[];

  constructor(o: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[]; registers: Registry[] }) {
    super(o);
    this.upperBounds = [...o.buckets].sort((a, b) => a - b);
  }

  protected fresh(): HistogramSeries {
    return { counts: new Float64Array(this.upperBounds.length + 1), sum: 0, count: 0 };
  }

  /** A handle on one label set: `observe(v)` finds the bucket and adds. */
  child(labels: Labels): { observe(v: number): void } {
    const s = this.resolve(labels);
    const bounds = this.upperBounds;
    const n = bounds.length;
    return {
      observe(v: number) {
        let i = 0;
        while (i < n && v > bounds[i]) i++;
        s.counts[i]++;
        s.sum += v;
        s.count++;
      },
    };
  }

  async get(): Promise<MetricObject> {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const e of this.series.values()) {
      let cum = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        cum += e.s.counts[i];
        values.push({ labels: { le: this.upperBounds[i], ...e.labels }, value: cum, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf', ...e.labels }, value: e.s.count, metricName: bucket });
      values.push({ labels: { ...e.labels }, value: e.s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...e.labels }, value: e.s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
