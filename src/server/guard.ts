import { isIP } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';

export interface GuardOptions {
  /** Origins (e.g. `https://app.example`) whose pages may call the server; `*` for any. The server's own origin always may. */
  allowedOrigins?: readonly string[];
  /** Host names (without port) the server answers besides IP addresses, `localhost` and the name it is bound to; `*` for any. */
  allowedHosts?: readonly string[];
}

export type Verdict = { ok: true; cors: string | null } | { ok: false; header: 'host' | 'origin'; value: string };

/** The host name of a Host header (`name:port`, `[v6]:port`), lowercase. */
function hostName(host: string): string {
  const h = host.toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  const i = h.lastIndexOf(':');
  return i < 0 ? h : h.slice(0, i);
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
}

/**
 * Which requests may reach a route, against what a browser can be made to send (the class of
 * Ollama's CVE-2024-28224). A page on another site can POST to loopback without a preflight, so a
 * request that carries an `Origin` must come from the server's own origin or an allowed one. DNS
 * rebinding makes another site's name resolve to 127.0.0.1, so the `Host` must be an IP address
 * (an address cannot be rebound), `localhost`, the name the server was bound to, or an allowed
 * name. Clients that are not browsers send no `Origin` and the Host they dialled: they pass.
 * `cors` is the origin to echo in CORS headers (an allowed cross-origin page), or null.
 */
export function checkRequest(headers: IncomingHttpHeaders, boundHost: string, o: GuardOptions): Verdict {
  const host = headers.host;
  if (host !== undefined) {
    const name = hostName(host);
    const hosts = o.allowedHosts ?? [];
    if (isIP(name) === 0 && name !== 'localhost' && name !== boundHost.toLowerCase() && !hosts.includes(name) && !hosts.includes('*')) return { ok: false, header: 'host', value: host };
  }
  const origin = headers.origin;
  if (origin === undefined || (host !== undefined && originHost(origin) === host.toLowerCase())) return { ok: true, cors: null };
  const origins = o.allowedOrigins ?? [];
  if (origins.includes(origin) || origins.includes('*')) return { ok: true, cors: origin };
  return { ok: false, header: 'origin', value: origin };
}

/** What the refusal says: which header, and the option and flag that would allow it. */
export function refusalMessage(v: Extract<Verdict, { ok: false }>): string {
  return v.header === 'host'
    ? `Refused: Host ${JSON.stringify(v.value)} is not this server's (a DNS rebinding page looks like this). Use an IP address or localhost, or allow the name with --allow-host (allowedHosts).`
    : `Refused: a page from ${JSON.stringify(v.value)} may not call this server (a cross-site request looks like this). Allow the origin with --allow-origin (allowedOrigins).`;
}

/** The CORS answer to an allowed cross-origin page: its preflight and every response. */
export function corsHeaders(origin: string, preflight: boolean): Record<string, string> {
  const h: Record<string, string> = {
    'access-control-allow-origin': origin,
    vary: 'origin',
    'access-control-expose-headers': 'x-pyfleet-via, x-pyfleet-attempts, x-pyfleet-worker, x-pyfleet-duration-ms, retry-after',
  };
  if (preflight) {
    h['access-control-allow-methods'] = 'GET, POST';
    h['access-control-allow-headers'] = 'authorization, content-type, x-pyfleet-session, x-pyfleet-timeout-ms, x-pyfleet-idempotent, x-pyfleet-chunk-timeout-ms, x-pyfleet-high-water-mark';
    h['access-control-max-age'] = '600';
  }
  return h;
}
