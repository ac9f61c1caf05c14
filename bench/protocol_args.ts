/**
 * What encodeArgs adds to JSON.stringify for ordinary call args (the pool's per-call cost at the
 * call site). Variants run interleaved, round after round, order rotating; prints the median of
 * each variant's per-call time and the median per-round difference.
 *
 *   node --import tsx bench/protocol_args.ts [rounds] [callsPerRound]
 */
import { encodeArgs } from '../src/protocol/args.js';

const rounds = Number(process.argv[2] ?? 31);
const n = Number(process.argv[3] ?? 200_000);

const cases: Record<string, () => unknown> = {
  'add {a, b}': () => ({ a: 1, b: 2 }),
  '~300 B object': () => ({
    user: { id: 1234, name: 'Ann Example', email: 'ann@example.com', tags: ['a', 'b', 'c'] },
    query: 'what is the capital of France?',
    options: { temperature: 0.2, maxTokens: 256, stop: ['\n\n'], stream: false },
    history: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }],
  }),
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

let sink = 0;
for (const [name, make] of Object.entries(cases)) {
  // Fresh objects per call, as the pool sees them (the caller builds its args each time).
  const inputs = Array.from({ length: 1024 }, make);
  const variants: Record<string, () => void> = {
    'JSON.stringify': () => {
      for (let i = 0; i < n; i++) sink += JSON.stringify(inputs[i & 1023]).length;
    },
    encodeArgs: () => {
      for (let i = 0; i < n; i++) sink += encodeArgs(inputs[i & 1023]).json.length;
    },
  };
  const names = Object.keys(variants);
  const times: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  const diffs: number[] = [];
  for (let r = 0; r < rounds + 3; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    const got: Record<string, number> = {};
    for (const v of order) {
      const t = process.hrtime.bigint();
      variants[v]();
      got[v] = Number(process.hrtime.bigint() - t) / n;
    }
    if (r < 3) continue; // warm-up
    for (const v of names) times[v].push(got[v]);
    diffs.push(got.encodeArgs - got['JSON.stringify']);
  }
  const bytes = JSON.stringify(make()).length;
  console.log(
    `${name} (${bytes} B of JSON): JSON.stringify ${median(times['JSON.stringify']).toFixed(0)} ns, encodeArgs ${median(times.encodeArgs).toFixed(0)} ns, added ${median(diffs).toFixed(0)} ns per call (median of ${rounds} interleaved rounds of ${n})`,
  );
}
if (sink === 0) console.log('');
