// Mutation testing of the pure logic (`npm run mutate`; slow, so not part of CI).
// The two lists below are the whole configuration to keep up to date: the files mutated, and
// the unit tests (fake clock, no Python) that must kill their mutants. MUTATION.md has the score.

/** The pure logic: decisions, the codes table, the matrix and policy, retry primitives, the wire codec. */
const MUTATE = [
  'src/call/decide.ts',
  'src/errors/codes.ts',
  'src/errors/matrix.ts',
  'src/errors/policy.ts',
  'src/errors/classify.ts',
  'src/resilience/backoff.ts',
  'src/resilience/circuit-breaker.ts',
  'src/resilience/budget.ts',
  'src/protocol/args.ts',
  'src/protocol/frame.ts',
];

/** Unit tests only: each runs in well under two seconds without a Python process. */
const TESTS = [
  'test/backoff.test.ts',
  'test/budget.test.ts',
  'test/circuit-breaker.test.ts',
  'test/classify.test.ts',
  'test/classify-format.test.ts',
  'test/decide.test.ts',
  'test/error-codes.test.ts',
  'test/frame-fuzz.test.ts',
  'test/policy.test.ts',
  'test/protocol-args.test.ts',
  'test/retry.test.ts',
];

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: MUTATE,
  testRunner: 'tap',
  tap: {
    testFiles: TESTS,
    // node:test prints TAP with this reporter; tsx runs the TypeScript as the test suite does.
    nodeArgs: ['--import', 'tsx', '--test-reporter=tap', '-r', '{{hookFile}}', '{{testFile}}'],
  },
  // Only the test files that reach a mutant run for it.
  coverageAnalysis: 'perTest',
  // Two cores, shared: more runners only queue.
  concurrency: 2,
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  // Only what the tests import: no dist/, no Python, no benchmarks in the sandbox.
  ignorePatterns: ['dist', 'bench', 'docs', 'examples', 'python', 'reports', '.stryker-tmp', 'scratch'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
