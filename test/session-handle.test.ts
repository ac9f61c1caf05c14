import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Pool } from '../src/pool/pool.js';
import path from 'node:path';
import { FIXTURES, testPool } from './helpers/pool.js';

let pool: Pool;
before(async () => {
  pool = await testPool({ module: path.join(FIXTURES, 'workloads.py'), workers: 1 });
});
after(() => pool.close());

describe('pool.session(id): what the README says of its handle', () => {
  it('execute honours detailed: the value with via, attempts, worker and duration', async () => {
    const s = pool.session('detailed-1');
    const r = await s.execute<number>('remember', { x: 5 }, { detailed: true });
    assert.equal(r.value, pool.stats().workers[0].pid, 'remember answers with its worker\'s pid');
    assert.equal(r.via, 'pool');
    assert.equal(r.attempts, 1);
    assert.equal(typeof r.workerId, 'number');
    assert.ok(r.durationMs >= 0);
    assert.equal(await s.execute('recall', {}), 5, 'a plain call still resolves with the value, in the same session');
    await s.close();
  });

  it('stream carries the session too: the generator sees the state of the calls before it', async () => {
    const s = pool.session('stream-1');
    const first: unknown[] = [];
    for await (const item of s.stream('session_gen', { n: 2 })) first.push(item);
    const second: unknown[] = [];
    for await (const item of s.stream('session_gen', { n: 2 })) second.push(item);
    assert.deepEqual([first, second], [[1, 1], [2, 2]]);
    await s.close();
  });
});
