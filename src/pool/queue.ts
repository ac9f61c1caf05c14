/**
 * The calls waiting for a worker, first in first out. Entries leave from the middle too (a
 * timeout, an abort, or a worker that can take only some of them), so removal marks an entry
 * and the array is compacted now and then instead of spliced.
 */
export interface Waiting {
  /** Set when the entry left the queue. */
  done: boolean;
}

export class WaitQueue<T extends Waiting> {
  private items: T[] = [];
  private head = 0;
  private live = 0;

  get length(): number {
    return this.live;
  }

  push(item: T): void {
    this.items.push(item);
    this.live++;
  }

  /** Marks `item` as gone (it timed out or was aborted). */
  remove(item: T): void {
    if (item.done) return;
    item.done = true;
    this.live--;
    this.compact();
  }

  /** Takes the first entries `accept` wants, in order, while it keeps accepting; returns them. */
  takeWhile(accept: (item: T) => boolean, stop: () => boolean): T[] {
    const out: T[] = [];
    for (let i = this.head; i < this.items.length && !stop(); i++) {
      const it = this.items[i];
      if (it.done || !accept(it)) continue;
      it.done = true;
      this.live--;
      out.push(it);
    }
    this.compact();
    return out;
  }

  /** Removes and returns every live entry matching `pred` (all of them without one). */
  drain(pred?: (item: T) => boolean): T[] {
    const out: T[] = [];
    for (let i = this.head; i < this.items.length; i++) {
      const it = this.items[i];
      if (it.done || (pred && !pred(it))) continue;
      it.done = true;
      this.live--;
      out.push(it);
    }
    this.compact();
    return out;
  }

  private compact(): void {
    while (this.head < this.items.length && this.items[this.head].done) this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
