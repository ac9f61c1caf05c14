import type { NatsConnection } from '@nats-io/transport-node';
import { DEFAULTS } from '../defaults.js';
import { invalidOption } from '../errors/invalid.js';
import { nats } from './nats.js';
import { PoolError } from '../errors/pool-error.js';

/** How to reach the NATS server(s), shared by connectFleet, pyfleet host and natsSessionStore. */
export interface NatsAuthOptions {
  /** One URL (nats://host:port) or several. */
  servers: string | string[];
  /** Server token (nats-server --auth). */
  token?: string;
  /** User and password (nats-server --user/--pass). */
  user?: string;
  pass?: string;
}

export interface ConnectOptions extends NatsAuthOptions {
  /** Connection name shown by the server (monitoring, logs). */
  name: string;
  /** Time for the first connection; after it, reconnects go on forever (default 5 000 ms). */
  timeoutMs?: number;
}

export function serverList(servers: string | string[]): string[] {
  const list = Array.isArray(servers) ? servers : String(servers).split(',');
  const out = list.map((s) => String(s).trim()).filter((s) => s !== '');
  if (out.length === 0) throw invalidOption('servers must name at least one NATS server (e.g. nats://127.0.0.1:4222)', 'fleet options');
  return out;
}

/**
 * Connects with the fleet's reconnect policy: after the first connection, the client reconnects
 * forever (a restarted server comes back) and buffers what is published meanwhile. The first
 * connection fails fast with a PoolError that names the address: a wrong credential is
 * PYFLEET_NATS_AUTH_FAILED at once (not retried), an unreachable server PYFLEET_NATS_UNAVAILABLE.
 */
export async function connectNats(o: ConnectOptions): Promise<NatsConnection> {
  const servers = serverList(o.servers);
  const timeoutMs = o.timeoutMs ?? DEFAULTS.fleet.startupTimeoutMs;
  if (o.token !== undefined && o.user !== undefined) {
    throw invalidOption('give a token or a user and password, not both', 'fleet options');
  }
  if ((o.user === undefined) !== (o.pass === undefined)) {
    throw invalidOption('user and pass go together', 'fleet options');
  }
  const { connect } = nats();
  const where = servers.join(', ');
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  // connect() gives up on a refused port at once; a server still starting deserves a few tries
  // within the start-up timeout.
  for (;;) {
    try {
      return await connect({
        servers,
        name: o.name,
        timeout: Math.max(100, deadline - Date.now()),
        ...(o.token !== undefined ? { token: o.token } : {}),
        ...(o.user !== undefined ? { user: o.user, pass: o.pass } : {}),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 50,
        pingInterval: 10_000,
        maxPingOut: 3,
      });
    } catch (e) {
      last = e;
      if (isAuthError(e)) {
        throw new PoolError({
          code: 'PYFLEET_NATS_AUTH_FAILED',
          cause: e,
          message: `The NATS server at ${where} refused the ${o.token !== undefined ? 'token' : o.user !== undefined ? `user ${JSON.stringify(o.user)} and password` : 'connection without credentials'} (${(e as Error).message}). Check --token / --user / --password (or the token, user and pass options).`,
        });
      }
      if (Date.now() + 100 >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadline - Date.now() - 100))));
    }
  }
  throw new PoolError({
    code: 'PYFLEET_NATS_UNAVAILABLE',
    cause: last,
    message: `Cannot connect to NATS at ${where} within ${timeoutMs} ms (${(last as Error)?.message ?? String(last)}). Is nats-server running there (nats-server -js -p PORT)?`,
  });
}

function isAuthError(e: unknown): boolean {
  const err = e as { name?: string; message?: string; code?: string } | null;
  if (err === null || typeof err !== 'object') return false;
  if (err.name === 'AuthorizationError' || err.name === 'UserAuthenticationExpiredError') return true;
  return /authorization|authentication/i.test(err.message ?? '');
}
