import { CircuitBreaker, type CircuitSnapshot } from '../resilience/circuit-breaker.js';
import { channels } from '../telemetry/channels.js';
import type { Heartbeat } from './heartbeat.js';
import { FLEET_PROTOCOL } from './version.js';

export type HostState = 'alive' | 'draining' | 'suspected' | 'dead' | 'left';

/** What a client knows of one host. */
export interface HostEntry {
  readonly id: string;
  hb: Heartbeat;
  state: HostState;
  /** performance.now() of the last heartbeat. */
  lastSeen: number;
  /** This client's calls in flight on the host. */
  inFlight: number;
  readonly breaker: CircuitBreaker;
  /** A liveness probe is under way. */
  probing: boolean;
  /** Called when the host is taken for dead or leaves: its calls in flight fail or move. */
  readonly lost: Set<(reason: string) => void>;
}

export interface HostTableOptions {
  fleetId: number;
  fleet: string;
  /** Silence, in heartbeat intervals, after which a host is suspected: no new calls (default 2). */
  suspectAfter: number;
  /** Silence, in heartbeat intervals, after which a host is dead (default 4). */
  deadAfter: number;
  circuitBreaker: { failureThreshold?: number; successThreshold?: number; openTimeoutMs?: number; halfOpenRequests?: number };
  isFailure: (err: unknown) => boolean;
  /**
   * Asks a silent host whether it is there: 'gone' (nobody subscribes to its subjects: its
   * connection closed, e.g. SIGKILL), 'silent' (no answer: hung, e.g. SIGSTOP), 'alive'.
   */
  probe: (hostId: string, timeoutMs: number) => Promise<'alive' | 'gone' | 'silent'>;
  onChange: () => void;
}

/**
 * The hosts a client knows, from their heartbeats. Silence is judged in the host's own
 * heartbeat intervals: after 1.5 intervals the client probes it (a host whose process died has
 * no subscription left, which the server says at once), after `suspectAfter` it gets no new
 * calls, after `deadAfter` (or a probe that finds no responder) it is dead and its calls in
 * flight are failed or moved. While the client itself is cut off from NATS nobody is judged.
 */
export class HostTable {
  private readonly hosts = new Map<string, HostEntry>();
  /** Hosts heard from that speak another fleet protocol: never routed to, named when no host can take a call. */
  private readonly incompatible = new Map<string, { protocol: number; version: string }>();
  private paused = false;
  private rr = 0;

  constructor(private readonly o: HostTableOptions) {}

  get size(): number {
    return this.hosts.size;
  }

  get(id: string): HostEntry | undefined {
    return this.hosts.get(id);
  }

  all(): HostEntry[] {
    return [...this.hosts.values()];
  }

  /** Hosts that take calls now. */
  alive(): HostEntry[] {
    return this.all().filter((h) => h.state === 'alive');
  }

  onHeartbeat(hb: Heartbeat, now: number): void {
    if (hb.protocol !== FLEET_PROTOCOL) {
      this.incompatible.set(hb.id, { protocol: typeof hb.protocol === 'number' ? hb.protocol : 1, version: String(hb.version) });
      return;
    }
    let h = this.hosts.get(hb.id);
    if (h === undefined) {
      h = {
        id: hb.id,
        hb,
        state: 'dead',
        lastSeen: now,
        inFlight: 0,
        breaker: new CircuitBreaker({ name: `host:${hb.id}`, ...this.o.circuitBreaker, isFailure: this.o.isFailure, poolId: this.o.fleetId }),
        probing: false,
        lost: new Set(),
      };
      this.hosts.set(hb.id, h);
    } else if (hb.seq < h.hb.seq && h.state !== 'dead' && h.state !== 'left') {
      return; // out of order
    }
    const was = h.state;
    h.hb = hb;
    h.lastSeen = now;
    h.state = hb.state === 'draining' ? 'draining' : 'alive';
    if (was === 'dead' || was === 'left') {
      if (channels['host:joined'].hasSubscribers) channels['host:joined'].publish({ fleetId: this.o.fleetId, fleet: this.o.fleet, hostId: hb.id, version: hb.version, moduleVersion: hb.moduleVersion });
    }
    if (was !== h.state) this.o.onChange();
  }

  onBye(id: string, reason: string): void {
    const h = this.hosts.get(id);
    if (h === undefined || h.state === 'left') return;
    h.state = 'left';
    if (channels['host:left'].hasSubscribers) channels['host:left'].publish({ fleetId: this.o.fleetId, fleet: this.o.fleet, hostId: id, reason });
    this.fail(h, `host ${id} left (${reason})`);
    this.o.onChange();
  }

  /** Its subject has no responder: the host's connection is gone. */
  markGone(id: string, now: number): void {
    const h = this.hosts.get(id);
    if (h === undefined || h.state === 'dead' || h.state === 'left') return;
    this.kill(h, now, 'no responder on its subjects: its connection is gone');
  }

  /** The client lost its NATS connection: silence says nothing about the hosts now. */
  pause(): void {
    this.paused = true;
  }

  /** Back online: every host gets a fresh silence clock (its heartbeats were not reaching us). */
  resume(now: number): void {
    this.paused = false;
    for (const h of this.hosts.values()) if (h.state !== 'dead' && h.state !== 'left') h.lastSeen = now;
  }

  tick(now: number): void {
    if (this.paused) return;
    for (const h of this.hosts.values()) {
      if (h.state === 'dead' || h.state === 'left') continue;
      const silent = now - h.lastSeen;
      const iv = h.hb.intervalMs;
      if (silent > this.o.deadAfter * iv) {
        this.kill(h, now, `no heartbeat for ${Math.round(silent)} ms (${this.o.deadAfter} intervals of ${iv} ms)`);
        continue;
      }
      if (silent > this.o.suspectAfter * iv && h.state !== 'suspected') {
        h.state = 'suspected';
        if (channels['host:suspected'].hasSubscribers) channels['host:suspected'].publish({ fleetId: this.o.fleetId, fleet: this.o.fleet, hostId: h.id, silentMs: Math.round(silent) });
        this.o.onChange();
      }
      if (silent > 1.5 * iv && !h.probing) {
        h.probing = true;
        const seen = h.lastSeen;
        void this.o.probe(h.id, iv).then((r) => {
          h.probing = false;
          if (r === 'gone' && h.lastSeen === seen && !this.paused) this.markGone(h.id, performance.now());
        });
      }
    }
  }

  /**
   * The least loaded live host that serves `command` (and whose circuit lets calls through),
   * preferring hosts not in `avoid`; ties go round-robin. Load: the host's own figure from its
   * last heartbeat plus this client's calls in flight there, over its capacity.
   */
  pick(command: string, avoid: ReadonlySet<string> | null): HostEntry | null {
    let best: HostEntry | null = null;
    let bestScore = Infinity;
    let second: HostEntry | null = null;
    let secondScore = Infinity;
    const start = this.rr++;
    const list = this.all();
    const n = list.length;
    for (let k = 0; k < n; k++) {
      const h = list[(start + k) % n];
      if (h.state !== 'alive' || h.hb.commands[command] === undefined || !h.breaker.allowsRequests) continue;
      const score = (h.hb.load.inFlight + h.hb.load.queued + h.inFlight) / Math.max(1, h.hb.load.capacity);
      if (avoid !== null && avoid.has(h.id)) {
        if (score < secondScore) {
          second = h;
          secondScore = score;
        }
      } else if (score < bestScore) {
        best = h;
        bestScore = score;
      }
    }
    return best ?? second;
  }

  /** Why no host can take `command` now, for the error message. */
  describe(command: string): string {
    const other = [...this.incompatible].map(([id, v]) => `${id} (refused: it speaks fleet protocol ${v.protocol}, pyfleet ${v.version}; this client speaks ${FLEET_PROTOCOL})`);
    if (this.hosts.size === 0 && other.length === 0) return 'no host has announced itself';
    const mine = this.all().map((h) => {
      const why = h.state !== 'alive' ? h.state : h.hb.commands[command] === undefined ? `module ${h.hb.moduleVersion} lacks ${command}` : h.breaker.allowsRequests ? 'available' : `circuit ${h.breaker.state}`;
      return `${h.id} (${why})`;
    });
    return [...mine, ...other].join(', ');
  }

  /** A live host that serves `command`, whose circuit lets calls through, and that `skip` does not rule out. */
  canTake(command: string, skip: (id: string) => boolean): boolean {
    for (const h of this.hosts.values()) if (h.state === 'alive' && h.hb.commands[command] !== undefined && h.breaker.allowsRequests && !skip(h.id)) return true;
    return false;
  }

  /** The commands the live hosts serve. */
  commandNames(): Set<string> {
    const names = new Set<string>();
    for (const h of this.alive()) for (const c of Object.keys(h.hb.commands)) names.add(c);
    return names;
  }

  /** What the live hosts know of `command` (the first that has it). */
  command(name: string): Heartbeat['commands'][string] | undefined {
    for (const h of this.hosts.values()) if (h.state !== 'dead' && h.state !== 'left' && h.hb.commands[name] !== undefined) return h.hb.commands[name];
    return undefined;
  }

  /** Does any live host serve `command`? (false with live hosts: an unknown command, not a wait.) */
  anyAliveServes(command: string): boolean | null {
    const live = this.all().filter((h) => h.state === 'alive' || h.state === 'draining' || h.state === 'suspected');
    if (live.length === 0) return null;
    return live.some((h) => h.hb.commands[command] !== undefined);
  }

  circuits(): Record<string, CircuitSnapshot> {
    return Object.fromEntries(this.all().map((h) => [h.id, h.breaker.snapshot()]));
  }

  /** Forgets hosts dead or gone for long (a restarted host comes back under a new id). */
  prune(now: number, keepMs: number): void {
    for (const [id, h] of this.hosts) if ((h.state === 'dead' || h.state === 'left') && now - h.lastSeen > keepMs && h.inFlight === 0) this.hosts.delete(id);
  }

  private kill(h: HostEntry, now: number, reason: string): void {
    h.state = 'dead';
    if (channels['host:dead'].hasSubscribers) channels['host:dead'].publish({ fleetId: this.o.fleetId, fleet: this.o.fleet, hostId: h.id, silentMs: Math.round(now - h.lastSeen), reason });
    this.fail(h, `host ${h.id} is taken for dead: ${reason}`);
    this.o.onChange();
  }

  private fail(h: HostEntry, reason: string): void {
    const fns = [...h.lost];
    h.lost.clear();
    for (const f of fns) f(reason);
  }
}
