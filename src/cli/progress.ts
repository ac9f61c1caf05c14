import cliProgress from 'cli-progress';

export interface ProgressOptions {
  /** Total, in the same unit as `update`'s value (here: seconds of the run). */
  total: number;
  /** Renders the part after the bar (TTY) or the whole line (not a TTY). */
  describe: () => string;
  /** Plain-line interval when stderr is not a terminal (ms). */
  plainEveryMs?: number;
  /** Print nothing at all. */
  quiet?: boolean;
  /** Label of a plain line. */
  label?: string;
}

/**
 * A progress display on stderr: a cli-progress bar when stderr is a terminal, plain
 * lines every few seconds otherwise (CI logs, pipes), nothing when quiet.
 */
export class Progress {
  private readonly bar: cliProgress.SingleBar | null;
  private lastPlain = 0;
  private value = 0;
  private stopped = false;

  constructor(private readonly o: ProgressOptions) {
    if (o.quiet === true || !process.stderr.isTTY) {
      this.bar = null;
      return;
    }
    this.bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: (options, params, payload: { text: string }) => `${cliProgress.Format.BarFormat(params.progress, options)} ${Math.round(params.progress * 100)}% | ${payload.text}`,
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        fps: 8,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(o.total, 0, { text: o.describe() });
  }

  update(value: number): void {
    if (this.stopped) return;
    this.value = Math.min(value, this.o.total);
    if (this.bar !== null) {
      this.bar.update(this.value, { text: this.o.describe() });
      return;
    }
    if (this.o.quiet === true) return;
    const now = Date.now();
    if (now - this.lastPlain >= (this.o.plainEveryMs ?? 1_000)) {
      this.lastPlain = now;
      process.stderr.write(`${this.o.label ?? 'progress'} ${Math.round((this.value / this.o.total) * 100)}%: ${this.o.describe()}\n`);
    }
  }

  /** A line above the bar (or a plain line). */
  log(line: string): void {
    if (this.o.quiet === true) return;
    if (this.bar !== null && !this.stopped) {
      // cli-progress redraws over the current line: clear it, write, and redraw.
      process.stderr.write(`\r\x1b[K${line}\n`);
      this.bar.update(this.value, { text: this.o.describe() });
    } else process.stderr.write(`${line}\n`);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.bar !== null) {
      this.bar.update(this.value, { text: this.o.describe() });
      this.bar.stop();
    } else if (this.o.quiet !== true) {
      process.stderr.write(`${this.o.label ?? 'progress'} done: ${this.o.describe()}\n`);
    }
  }
}
