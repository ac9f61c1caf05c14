import { fileURLToPath } from 'node:url';

/** The Python package shipped next to dist/ and src/. */
export const PYTHON_PACKAGE_DIR = fileURLToPath(new URL('../../python', import.meta.url));

export interface WorkerEnvOptions {
  /** The user's additions (`createPool({ env })`); their PYTHONPATH is kept, after pyfleet's package. */
  env?: Record<string, string>;
  maxFrameBytes: number;
  /** 0: the worker sends no heartbeats. */
  heartbeatMs: number;
  /** Variables the pool adds for features it turns on (chaos, concurrency, ...). */
  extra?: Record<string, string>;
}

/**
 * The environment of every Python worker, built in one place for the pool and the adapters: the
 * host's environment, the user's additions, pyfleet's package first on PYTHONPATH (followed by
 * the user's PYTHONPATH, or else the host's), and the protocol settings the worker reads.
 */
export function workerEnv(o: WorkerEnvOptions): Record<string, string> {
  const user = o.env ?? {};
  const inherited = user.PYTHONPATH ?? process.env.PYTHONPATH;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ...user,
    PYTHONPATH: inherited ? `${PYTHON_PACKAGE_DIR}:${inherited}` : PYTHON_PACKAGE_DIR,
    PYFLEET_MAX_FRAME: String(o.maxFrameBytes),
    PYFLEET_HEARTBEAT_MS: String(o.heartbeatMs),
    PYFLEET_PARENT_PID: String(process.pid),
  };
  // Fault injection reaches a worker only when its pool turned it on (through `extra`).
  delete env.PYFLEET_CHAOS;
  return { ...env, ...o.extra };
}
