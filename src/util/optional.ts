import { createRequire } from 'node:module';
import { PoolError } from '../errors/pool-error.js';

// What needs which optional peer dependency, and the line that installs it. The NATS client stays
// on 3.3: 3.4 pulls @nats-io/nuid 3, which declares Node >= 22.
const FEATURES = {
  server: ['The HTTP server (pyfleet/server, pyfleet serve)', 'fastify ajv prom-client'],
  fleet: ['The fleet (pyfleet/fleet, pyfleet host, pyfleet chaos --fleet)', '@nats-io/transport-node@3.3 @nats-io/kv@3.3'],
  validation: ['Checking args against their schema (validateArgs, and every call of pyfleet serve)', 'ajv'],
  metrics: ['Prometheus metrics (PyfleetMetrics, poolMetrics, /metrics)', 'prom-client'],
  tracing: ['Tracing (instrument, or an ErrorReporter asked for tracing)', '@opentelemetry/api'],
} as const;

// The peers are CommonJS: a require at first use loads the copy an import would, keeps pyfleet's
// graph free of top-level await (so require(esm) works) and synchronous APIs synchronous.
const load = createRequire(import.meta.url);

/** The module, or a PYFLEET_MISSING_DEPENDENCY PoolError naming the `npm install` line. */
export function requireOptional<T>(specifier: string, feature: keyof typeof FEATURES): T {
  try {
    return load(specifier) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND' || !(e as Error).message.includes(`'${specifier}'`)) throw e;
    const [what, install] = FEATURES[feature];
    const pkg = specifier.split('/', specifier.startsWith('@') ? 2 : 1).join('/');
    throw new PoolError({
      code: 'PYFLEET_MISSING_DEPENDENCY',
      strategy: 'abandon',
      message: `${what} needs ${pkg}, an optional dependency of pyfleet that is not installed: run \`npm install ${install}\` in your project.`,
      details: { package: pkg, install: `npm install ${install}` },
      cause: e,
    });
  }
}

/** Is the optional dependency there (without loading it)? */
export function isInstalled(specifier: string): boolean {
  try {
    return load.resolve(specifier) !== '';
  } catch {
    return false;
  }
}
