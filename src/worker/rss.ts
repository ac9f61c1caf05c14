import { readFile } from 'node:fs/promises';

const PAGE = 4096;

/** Resident set size of `pid` in bytes, from /proc (Linux); null where it cannot be read. */
export async function readRss(pid: number): Promise<number | null> {
  try {
    const statm = await readFile(`/proc/${pid}/statm`, 'latin1');
    const resident = Number(statm.split(' ')[1]);
    return Number.isFinite(resident) ? resident * PAGE : null;
  } catch {
    return null;
  }
}
