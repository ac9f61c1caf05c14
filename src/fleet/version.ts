import { readFileSync } from 'node:fs';

/** pyfleet's own version, announced in heartbeats (package.json two folders up, in src/ and in dist/). */
export const PYFLEET_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();

/**
 * The fleet's wire protocol (docs/fleet.md): 2 since the client's call core decides every
 * attempt (a host's pool makes one per message, keyed by call id and attempt) and heartbeats
 * carry each command's whole CommandInfo. A host or client of another version is refused.
 */
export const FLEET_PROTOCOL = 2;
