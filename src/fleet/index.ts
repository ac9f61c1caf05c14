/**
 * `pyfleet/fleet`: Python calls spread over hosts on NATS. A subpath of its own so that
 * `import 'pyfleet'` never loads the NATS client for users of a single pool.
 */
export { connectFleet, Fleet } from './client.js';
/** The session handle of a fleet is the pool's (one handle over both). */
export { PoolSession as FleetSession } from '../call/session.js';
export type { FleetOptions, FleetStats, FleetHostStats, FleetStreamOptions } from './client-options.js';
export { startHost, FleetHost, type HostOptions } from './host.js';
export { hostPoolOptions, type HostPoolOptions, type HostSessionOptions } from './host-pool-options.js';
export { natsSessionStore, type NatsSessionStore, type NatsSessionStoreOptions } from './nats-session-store.js';
export { fleetSubjects, type FleetSubjects } from './subjects.js';
export type { Heartbeat } from './heartbeat.js';
export type { NatsAuthOptions } from './connection.js';
export type { HostState } from './host-table.js';
