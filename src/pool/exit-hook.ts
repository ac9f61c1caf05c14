/** Anything that can kill its workers synchronously. */
interface Killable {
  killAll(): void;
}

const live = new Set<Killable>();
let installed = false;

/**
 * Kills every worker of `pool` if the host exits without closing it (`process.exit`, an uncaught
 * exception). SIGKILL of the host is covered in the worker itself: PDEATHSIG, and EOF on fd 3.
 */
export function keepUntilExit(pool: Killable): void {
  live.add(pool);
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const p of live) p.killAll();
  });
}

/** The pool closed: nothing left to kill at exit. */
export function forgetAtExit(pool: Killable): void {
  live.delete(pool);
}
