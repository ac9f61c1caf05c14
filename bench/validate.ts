/**
 * `node --import tsx bench/validate.ts`: what `validateArgs: true` costs per call.
 *
 * The args schema of `search` (test/fixtures/typed/handlers.py, derived by real Python: a
 * TypedDict with a Literal, an Optional int and a list of strings), a typical small args
 * object, and three variants run interleaved in rotated order, round after round:
 *   none       the same loop, calling a no-op instead of a check (the loop's own cost)
 *   ajv        the compiled Ajv function called directly
 *   validator  ArgsValidator.check(command, args): the lookup by command plus the Ajv call,
 *              what the pool will run on each call
 * Per-call figures are medians over rounds; the cost of validation is validator minus none
 * per round, then the median. Also: the one-time compile, and a refused call (PoolError built).
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { describeModule } from '../src/typing/introspect.js';
import { createAjv } from '../src/validate/ajv.js';
import { ArgsValidator } from '../src/validate/args-validator.js';

const HANDLERS = fileURLToPath(new URL('../test/fixtures/typed/handlers.py', import.meta.url));
const ROUNDS = 21;
const CALLS = 200_000;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const mod = await describeModule(HANDLERS);
  const schema = mod.commands.search.args;
  const argsPool = Array.from({ length: 64 }, (_, i) => ({ query: `q${i}`, mode: i % 2 ? 'fast' : 'slow', limit: i, tags: ['a', 'b'] }));

  const t0 = performance.now();
  const compiled = createAjv('pool').compile(schema as object);
  const compileMs = performance.now() - t0;
  const t1 = performance.now();
  createAjv('pool').compile(mod.commands.length.args as object);
  const laterCompileMs = performance.now() - t1;
  const validator = new ArgsValidator({ schemas: (c) => mod.commands[c]?.args });
  validator.check('search', argsPool[0]);

  let sink = 0;
  const noop = (_c: string, a: unknown): null => (a === undefined ? (sink++, null) : null);
  const variants: Record<string, () => void> = {
    none: () => {
      for (let i = 0; i < CALLS; i++) if (noop('search', argsPool[i & 63]) !== null) sink++;
    },
    ajv: () => {
      for (let i = 0; i < CALLS; i++) if (!compiled(argsPool[i & 63])) sink++;
    },
    validator: () => {
      for (let i = 0; i < CALLS; i++) if (validator.check('search', argsPool[i & 63]) !== null) sink++;
    },
  };
  const names = Object.keys(variants);
  for (const n of names) variants[n](); // warm-up: every variant optimized before timing
  const perCall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const cost: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    const round: Record<string, number> = {};
    for (const n of order) {
      const s = performance.now();
      variants[n]();
      round[n] = ((performance.now() - s) * 1e6) / CALLS;
      perCall[n].push(round[n]);
    }
    cost.push(round.validator - round.none);
  }

  const bad = { query: 'q', mode: 'quick' };
  const badRuns: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const s = performance.now();
    for (let i = 0; i < 20_000; i++) if (validator.check('search', bad) === null) sink++;
    badRuns.push(((performance.now() - s) * 1e6) / 20_000);
  }

  const fmt = (ns: number): string => `${ns.toFixed(0)} ns`;
  console.log(`validateArgs cost, ${ROUNDS} interleaved rounds of ${CALLS.toLocaleString('en')} calls, Node ${process.version}`);
  console.log(`args: ${JSON.stringify(argsPool[1])}`);
  for (const n of names) console.log(`  ${n.padEnd(10)} ${fmt(median(perCall[n]))} per call (median)`);
  console.log(`  validation cost per call (validator - none, median of rounds): ${fmt(median(cost))}`);
  console.log(`  a refused call (PoolError with the message built): ${(median(badRuns) / 1000).toFixed(2)} µs`);
  console.log(`  compiling a schema, once per command: ${compileMs.toFixed(2)} ms the first in the process (Ajv warming up), ${laterCompileMs.toFixed(2)} ms a later one (length: two dataclasses)`);
  if (sink === -1) console.log(sink);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
