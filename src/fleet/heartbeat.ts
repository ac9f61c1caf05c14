import type { PoolStats } from '../pool/pool.js';
import type { CommandInfo } from '../protocol/messages.js';

/** What a host announces on the fleet's hosts subject (JSON), every `intervalMs` and when asked. */
export interface Heartbeat {
  t: 'hb';
  id: string;
  fleet: string;
  /** Increases with every heartbeat of this host process. */
  seq: number;
  /** 'up' takes calls; 'draining' finishes what it has and takes nothing new. */
  state: 'up' | 'draining';
  intervalMs: number;
  /** The fleet protocol the host speaks (FLEET_PROTOCOL); a client routes only to hosts of its own. */
  protocol: number;
  /** pyfleet's version on the host. */
  version: string;
  /** The module's version: --module-version, or a hash of the module file. */
  moduleVersion: string;
  module: string;
  /** Each command as the workers' hello described it (without schemas): its timeout, idempotency, kind. */
  commands: Record<string, CommandInfo>;
  load: { inFlight: number; queued: number; capacity: number };
  /** Sessions the host holds now. */
  sessions: number;
  durableSessions: boolean;
  pid: number;
  hostname: string;
  startedAt: number;
  pool: PoolStats;
}

/** The last word of a host that leaves cleanly. */
export interface Goodbye {
  t: 'bye';
  id: string;
  reason: string;
}

export type HostAnnouncement = Heartbeat | Goodbye;

export function parseAnnouncement(data: Uint8Array): HostAnnouncement | null {
  try {
    const j = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as HostAnnouncement;
    if (j === null || typeof j !== 'object' || typeof j.id !== 'string') return null;
    if (j.t === 'bye') return j;
    if (j.t === 'hb' && typeof j.seq === 'number' && typeof j.intervalMs === 'number' && j.commands !== null && typeof j.commands === 'object' && j.load !== null && typeof j.load === 'object') return j;
    return null;
  } catch {
    return null;
  }
}
