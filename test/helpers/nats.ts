import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface NatsAuth {
  token?: string;
  user?: string;
  pass?: string;
}

/** A real nats-server with JetStream on a free loopback port and its own store directory. */
export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  pid(): number | null;
  /** Stops it (SIGTERM, SIGKILL after 5 s); the store directory stays for a restart. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Stops it and removes its store. */
  dispose(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `nats-server -js -a 127.0.0.1 -p <free port> -sd <tmpdir>` and resolves once it accepts
 * connections. `maxPayload` (bytes) goes through a config file: the server has no flag for it.
 */
export async function startNats(auth: NatsAuth = {}, extraArgs: string[] = [], o: { maxPayload?: number } = {}): Promise<NatsServer> {
  const port = await freePort();
  const storeDir = mkdtempSync(path.join(tmpdir(), 'pyfleet-nats-'));
  let child: ChildProcess | null = null;
  const args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir, ...extraArgs];
  if (o.maxPayload !== undefined) {
    const conf = path.join(storeDir, 'server.conf');
    writeFileSync(conf, `max_payload: ${o.maxPayload}\n`);
    args.push('-c', conf);
  }
  if (auth.token !== undefined) args.push('--auth', auth.token);
  if (auth.user !== undefined) args.push('--user', auth.user, '--pass', auth.pass ?? '');
  const launch = async (): Promise<void> => {
    const c = spawn('nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let log = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`nats-server did not start within 10 s:\n${log}`)), 10_000);
      c.stderr!.setEncoding('utf8').on('data', (d: string) => {
        log += d;
        if (log.includes('Server is ready')) {
          clearTimeout(t);
          resolve();
        }
      });
      c.on('error', (e) => {
        clearTimeout(t);
        reject(new Error(`nats-server cannot be started (${e.message}); install it: apt-get install -y nats-server`));
      });
      c.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`nats-server exited with ${code}:\n${log}`));
      });
    });
    c.stderr!.resume();
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
      c.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      c.kill('SIGTERM');
    });
  };
  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    pid: () => child?.pid ?? null,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
    dispose: async () => {
      await stop();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
