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
  /** Items delivered; null while the pool does not publish `call:end.items`. */
  items: number | null;
}

export interface StreamWatch {
  /** Streams started and not ended. */
  readonly open: number;
  close(): void;
}

/**
 * Streams, told apart from other calls by the `call:start` / `call:end` events: by their
 * `stream` field when the pool sends one, else by the command being a generator in the pool's
 * registered commands (so `pool.stream()` on an ordinary command is counted only once the pool
 * says so). Shared by the metrics and the dashboard, so both count the same streams.
 */
export function watchStreams(pool: ObservedPool, on: { start?(e: EventPayloads['call:start']): void; end?(e: StreamEnd): void }): StreamWatch {
  const open = new Set<number>();
  const isStream = (e: { command: string; stream?: boolean }): boolean => e.stream ?? pool.registeredCommands?.[e.command]?.stream === true;
  const offs = [
    pool.on('call:start', (e) => {
      if (!isStream(e)) return;
      open.add(e.callId);
      on.start?.(e);
    }),
    pool.on('call:end', (e) => {
      // A stream that started before we watched still ends as one (the gauge just never saw it open).
      if (!open.delete(e.callId) && !isStream(e)) return;
      on.end?.({
        callId: e.callId,
        command: e.command,
        outcome: e.ok ? 'ok' : e.code === 'PYFLEET_STREAM_BROKEN' ? 'broken' : 'error',
        code: e.code,
        durationMs: e.durationMs,
        items: e.items ?? null,
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
