import { readdirSync, readFileSync } from 'node:fs';

/** Is `pid` a live process (a zombie counts as dead: it has exited and only waits to be reaped)? */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists but is not ours; it is alive all the same.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return process.platform !== 'linux';
  }
}

/** The environment variable the pool gives every worker it starts: the host's pid. */
const PARENT_MARK = 'PYFLEET_PARENT_PID=';

/** Does /proc say that `pid` is a worker started by the host `hostPid`? (null: cannot tell, e.g. not Linux.) */
export function isWorkerOf(pid: number, hostPid: number): boolean | null {
  let env: string;
  try {
    env = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return null;
  }
  return env.split('\0').includes(`${PARENT_MARK}${hostPid}`);
}

/**
 * Live processes that are pyfleet workers of `hostPid`, found by scanning /proc (Linux): catches
 * workers whose pid the host never saw, and workers re-parented to init after their parent died.
 * Empty where /proc is not available.
 */
export function scanWorkersOf(hostPid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === hostPid) continue;
    if (isWorkerOf(pid, hostPid) === true && isAlive(pid)) found.push(pid);
  }
  return found;
}

/**
 * Worker processes of this host still alive: every pid seen during the run that is alive (and,
 * where /proc tells, still a worker of this host, so a recycled pid is not blamed), plus any
 * worker found by the /proc scan.
 */
export function findOrphans(seenPids: Iterable<number>, hostPid = process.pid): number[] {
  const out = new Set<number>();
  for (const pid of seenPids) {
    if (isAlive(pid) && isWorkerOf(pid, hostPid) !== false) out.add(pid);
  }
  for (const pid of scanWorkersOf(hostPid)) out.add(pid);
  return [...out].sort((a, b) => a - b);
}
