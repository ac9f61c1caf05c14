import { createRequire } from 'node:module';
import { PoolError } from '../errors/pool-error.js';

/**
 * What needs which optional peer dependency, and the line that installs it. The NATS client
 * stays on 3.3: 3.4 pulls @nats-io/nuid 3, which declares Node >= 22.
 */
const FEATURES = {
  server: { what: 'The HTTP server (pyfleet/server, pyfleet serve)', install: 'fastify ajv prom-client' },
  fleet: { what: 'The fleet (pyfleet/fleet, pyfleet host, pyfleet chaos --fleet)', install: '@nats-io/transport-node@3.3 @nats-io/kv@3.3' },
  validation: { what: 'Checking args against their schema (validateArgs, and every call of pyfleet serve)', install: 'ajv' },
  metrics: { what: 'Prometheus metrics (PyfleetMetrics, poolMetrics, /metrics)', install: 'prom-client' },
  tracing: { what: 'Tracing (instrument, or an ErrorReporter asked for tracing)', install: '@opentelemetry/api' },
} as const;

export type Feature = keyof typeof FEATURES;

// The optional peers are CommonJS packages: a synchronous require at first use loads the same
// copy an import would, keeps every pyfleet module free of top-level await (require(esm)), and
// lets a synchronous API (new PyfleetMetrics(), instrument()) stay synchronous.
const load = createRequire(import.meta.url);

const packageOf = (specifier: string): string => specifier.split('/', specifier.startsWith('@') ? 2 : 1).join('/');

/** The module, or a PYFLEET_MISSING_DEPENDENCY PoolError naming the `npm install` line. */
export function requireOptional<T>(specifier: string, feature: Feature): T {
  try {
    return load(specifier) as T;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && (e as Error).message.includes(`'${specifier}'`);
    if (!missing) throw e;
    const f = FEATURES[feature];
    throw new PoolError({
      code: 'PYFLEET_MISSING_DEPENDENCY',
      strategy: 'abandon',
      message: `${f.what} needs ${packageOf(specifier)}, an optional dependency of pyfleet that is not installed: run \`npm install ${f.install}\` in your project.`,
      details: { package: packageOf(specifier), install: `npm install ${f.install}` },
      cause: e,
    });
  }
}

/** Is the optional dependency there (without loading it)? */
export function isInstalled(specifier: string): boolean {
  try {
    load.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}
