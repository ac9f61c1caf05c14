import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { cli } from './helpers/cli.js';

const HANDLERS = 'examples/handlers.py';

function occupiedPort(): Promise<net.Server> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

describe('pyfleet CLI: what a user sees when something is off', () => {
  it('an unknown command suggests the nearest', async () => {
    for (const [typed, meant] of [
      ['serv', 'serve'],
      ['python-pth', 'python-path'],
      ['hots', 'host'],
    ]) {
      const r = await cli([typed]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`unknown command '${typed}'\\n\\(Did you mean ${meant}\\?\\)`));
    }
  });

  it('serve on a port in use prints one line that says so, no stack trace, and exits 1', async () => {
    const busy = await occupiedPort();
    try {
      const port = (busy.address() as net.AddressInfo).port;
      const r = await cli(['serve', '--module', HANDLERS, '--port', String(port), '--workers', '1']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `pyfleet: cannot listen on 127.0.0.1:${port}: the port is in use (another pyfleet serve?). Stop what listens there, or pick another port with --port (0: any free port).\n`);
    } finally {
      busy.close();
    }
  });

  it('serve on an address that is not this machine’s prints one line', async () => {
    const r = await cli(['serve', '--module', HANDLERS, '--port', '0', '--host', '192.0.2.1', '--token', 't', '--workers', '1']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^pyfleet: cannot listen on 192\.0\.2\.1(:0)?: it is not an address of this machine\. Pass one of its addresses to --host \(or 0\.0\.0\.0 for all\)\.\n$/);
  });

  it("serve's banner gives a dashboard URL that opens with the token", async () => {
    let dashboard = '';
    const seen: { page?: number; html?: string; bare?: number } = {};
    const r = await cli(['serve', '--module', HANDLERS, '--port', '0', '--token', 's3cret/+', '--workers', '1'], 60_000, undefined, (out, child) => {
      const m = /dashboard: (\S+)\n/.exec(out);
      if (m === null || dashboard !== '') return;
      dashboard = m[1];
      void (async () => {
        try {
          const page = await fetch(dashboard);
          seen.page = page.status;
          seen.html = await page.text();
          seen.bare = (await fetch(new URL('/', dashboard))).status;
        } finally {
          child.kill('SIGTERM');
        }
      })();
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(dashboard, /^http:\/\/127\.0\.0\.1:\d+\/\?token=s3cret%2F%2B$/);
    assert.equal(seen.page, 200);
    assert.match(seen.html ?? '', /<html/i);
    assert.equal(seen.bare, 401, 'without the token the page is refused');
  });

  it('demo --help says what the pool does with sessions and re-sends (durable sessions, an immediate first re-send)', async () => {
    const r = await cli(['demo', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /lost if it dies|after the decision matrix's delay \(1 s\)/);
    assert.match(r.stdout, /remember\s+session state, snapshotted in the host: restored on another worker if its own dies/);
  });

  it('python-path prints the directory that holds the pyfleet package (with py.typed and pyfleet.testing)', async () => {
    const r = await cli(['python-path']);
    assert.equal(r.code, 0, r.stderr);
    const dir = r.stdout.trim();
    assert.ok(path.isAbsolute(dir));
    const files = readdirSync(path.join(dir, 'pyfleet'));
    assert.ok(files.includes('py.typed') && files.includes('testing.py') && files.includes('__init__.py'), files.join(' '));
  });
});
