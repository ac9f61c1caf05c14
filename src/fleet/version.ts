import { readFileSync } from 'node:fs';

/** pyfleet's own version, announced in heartbeats (package.json two folders up, in src/ and in dist/). */
export const PYFLEET_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();
