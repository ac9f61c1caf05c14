import { execFile } from 'node:child_process';
import { access, constants, open, realpath } from 'node:fs/promises';
import path from 'node:path';

const cache = new Map<string, Promise<string>>();

async function onPath(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

async function isScript(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    await fh.read(head, 0, 2, 0);
    return head.toString('latin1') === '#!';
  } finally {
    await fh.close();
  }
}

function askInterpreter(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, ['-c', 'import sys; print(sys.executable)'], { timeout: 30_000 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout.trim());
    });
  });
}

async function resolveUncached(python: string): Promise<string> {
  const found = python.includes('/') ? path.resolve(python) : await onPath(python);
  if (found === null) throw new Error(`no executable named ${JSON.stringify(python)} on PATH`);
  // Symlinks are kept as they are: a virtualenv's bin/python is a symlink, and Python finds the
  // virtualenv from the path it was started by. A shim (pyenv, asdf) is a shell script that costs
  // ~100 ms per start to pick the interpreter: ask it once which binary it runs, and spawn that.
  if (!(await isScript(await realpath(found)))) return found;
  const exe = await askInterpreter(found);
  if (exe === '') throw new Error(`${python} did not report sys.executable`);
  return exe;
}

/** The real path of the interpreter `python` names, resolved once per process. */
export function resolvePython(python: string): Promise<string> {
  let p = cache.get(python);
  if (p === undefined) {
    p = resolveUncached(python);
    cache.set(python, p);
    p.catch(() => cache.delete(python));
  }
  return p;
}
