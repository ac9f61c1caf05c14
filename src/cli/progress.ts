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

const WIDTH = 24;
const REDRAW_MS = 125;

/**
 * A progress display on stderr: a bar redrawn in place when stderr is a terminal, plain
 * lines every few seconds otherwise (CI logs, pipes), nothing when quiet.
 */
export class Progress {
  private readonly tty: boolean;
  private last = 0;
  private value = 0;
  private stopped = false;

  constructor(private readonly o: ProgressOptions) {
    this.tty = o.quiet !== true && process.stderr.isTTY === true;
    if (this.tty) this.draw();
  }

  private draw(): void {
    const share = this.o.total > 0 ? this.value / this.o.total : 1;
    const full = Math.round(share * WIDTH);
    process.stderr.write(`\r\x1b[K${'\u2588'.repeat(full)}${'\u2591'.repeat(WIDTH - full)} ${Math.round(share * 100)}% | ${this.o.describe()}`);
  }

  update(value: number): void {
    if (this.stopped || this.o.quiet === true) return;
    this.value = Math.min(value, this.o.total);
    const now = Date.now();
    if (now - this.last < (this.tty ? REDRAW_MS : (this.o.plainEveryMs ?? 1_000))) return;
    this.last = now;
    if (this.tty) this.draw();
    else process.stderr.write(`${this.o.label ?? 'progress'} ${Math.round((this.value / this.o.total) * 100)}%: ${this.o.describe()}\n`);
  }

  /** A line above the bar (or a plain line). */
  log(line: string): void {
    if (this.o.quiet === true) return;
    if (this.tty && !this.stopped) {
      process.stderr.write(`\r\x1b[K${line}\n`);
      this.draw();
    } else process.stderr.write(`${line}\n`);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tty) {
      this.draw();
      process.stderr.write('\n');
    } else if (this.o.quiet !== true) process.stderr.write(`${this.o.label ?? 'progress'} done: ${this.o.describe()}\n`);
  }
}
