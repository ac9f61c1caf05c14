import { invalidOption } from '../errors/invalid.js';

/**
 * Every NATS subject and JetStream bucket a fleet uses, in one place (docs/fleet.md lists them).
 * A fleet name is one subject token, so fleets on one server never see each other's traffic.
 */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

export function validateFleetName(fleet: unknown): string {
  if (typeof fleet !== 'string' || !TOKEN.test(fleet)) {
    throw invalidOption(`fleet must be 1-64 characters of A-Z, a-z, 0-9, _ or - (one NATS subject token), got ${JSON.stringify(fleet)}`, 'fleet options');
  }
  return fleet;
}

export function validateHostId(id: unknown): string {
  if (typeof id !== 'string' || !TOKEN.test(id)) throw invalidOption(`host id must be 1-64 characters of A-Z, a-z, 0-9, _ or -, got ${JSON.stringify(id)}`, 'host options');
  return id;
}

export interface FleetSubjects {
  /** Heartbeats and leave notices of every host: every client subscribes. */
  readonly hosts: string;
  /** A client asks every host to send a heartbeat now (at start-up and after a reconnect). */
  readonly discover: string;
  /** Calls to one host (request-reply, the reply subject on the client's inbox). */
  call(hostId: string): string;
  /** Stream requests to one host. */
  stream(hostId: string): string;
  /** Control messages to one host: stream credit and cancel, session close, liveness probe. */
  control(hostId: string): string;
  /** JetStream KV bucket of the session-to-host map. */
  readonly sessionBucket: string;
  /** JetStream KV bucket of session snapshots (natsSessionStore's default). */
  readonly snapshotBucket: string;
}

export function fleetSubjects(fleet: string): FleetSubjects {
  validateFleetName(fleet);
  const base = `pyfleet.${fleet}`;
  return {
    hosts: `${base}.hosts`,
    discover: `${base}.discover`,
    call: (h) => `${base}.host.${h}.call`,
    stream: (h) => `${base}.host.${h}.stream`,
    control: (h) => `${base}.host.${h}.ctl`,
    sessionBucket: `pyfleet_${fleet}_sessions`,
    snapshotBucket: `pyfleet_${fleet}_snapshots`,
  };
}

/** KV keys allow [-/_=.a-zA-Z0-9]: a session id (any string) becomes base64url of its UTF-8. */
export function kvKeyOf(id: string): string {
  return `s.${Buffer.from(id, 'utf8').toString('base64url') || '_'}`;
}
