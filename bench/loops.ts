/**
 * The call loops sections a and b run on a pool, shared with bench/compare-refs.ts (which runs
 * them on two builds of the pool: anything with this `execute` will do).
 */
export interface Executes {
  execute(command: string, args?: unknown, options?: { idempotent?: boolean; sessionId?: string }): Promise<unknown>;
}

/** `n` calls of `add`, one at a time; the elapsed ms and each call's latency in ms. */
export async function poolSequential(pool: Executes, n: number): Promise<{ ms: number; lat: Float64Array }> {
  const lat = new Float64Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await pool.execute('add', { a: i, b: 1 });
    lat[i] = performance.now() - s;
  }
  return { ms: performance.now() - t0, lat };
}

/** `n` calls of the idempotent `add` from `depth` concurrent callers; the elapsed ms. */
export async function poolPipelined(pool: Executes, n: number, depth: number): Promise<{ ms: number }> {
  let next = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await pool.execute('add', { a: i, b: 1 }, { idempotent: true });
    }
  };
  await Promise.all(Array.from({ length: depth }, lane));
  return { ms: performance.now() - t0 };
}

/** `n` calls of `command(args(i))`, one at a time; the elapsed ms. */
export async function callLoop(pool: Executes, n: number, command: string, args: (i: number) => unknown, options?: { sessionId?: string }): Promise<{ ms: number }> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await pool.execute(command, args(i), options);
  return { ms: performance.now() - t0 };
}
