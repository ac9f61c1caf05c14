import type { EventPayloads } from './channels.js';
import type { ObservedPool } from './source.js';

/** How a stream ended: `ok` (the generator finished, or the consumer stopped it), `broken` (its worker died after the first item: PYFLEET_STREAM_BROKEN), `error` (anything else). */
export type StreamOutcome = 'ok' | 'broken' | 'error';

export interface StreamEnd {
  callId: number;
  command: string;
  outcome: StreamOutcome;
  code: string | null;
  durationMs: number;
  /** Items delivered. */
  items: number;
}

export interface StreamWatch {
  /** Streams started and not ended. */
  readonly open: number;
  close(): void;
}

/**
 * Streams (calls made by `pool.stream()`), from the `call:start` / `call:end` events. Shared by
 * the metrics and the dashboard, so both count the same streams.
 */
export function watchStreams(pool: ObservedPool, on: { start?(e: EventPayloads['call:start']): void; end?(e: StreamEnd): void }): StreamWatch {
  const open = new Set<number>();
  const offs = [
    pool.on('call:start', (e) => {
      if (!e.stream) return;
      open.add(e.callId);
      on.start?.(e);
    }),
    pool.on('call:end', (e) => {
      // A stream that started before we watched still ends as one (the gauge just never saw it open).
      if (!open.delete(e.callId) && !e.stream) return;
      on.end?.({
        callId: e.callId,
        command: e.command,
        outcome: e.ok ? 'ok' : e.code === 'PYFLEET_STREAM_BROKEN' ? 'broken' : 'error',
        code: e.code,
        durationMs: e.durationMs,
        items: e.items,
      });
    }),
  ];
  return {
    get open() {
      return open.size;
    },
    close() {
      for (const off of offs.splice(0)) off();
      open.clear();
    },
  };
}
