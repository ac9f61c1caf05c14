import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ModuleSchemas } from './schema.js';

/** The package's python/ folder, from src/typing/ (tsx) and dist/typing/ (built) alike. */
const PYTHON_PACKAGE_DIR = fileURLToPath(new URL('../../python', import.meta.url));

export interface DescribeOptions {
  /** The interpreter (default: $PYFLEET_PYTHON or python3). */
  python?: string;
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * Runs `python -m pyfleet._schema MODULE` once and returns what it printed: every command's
 * schemas and the warnings about hints that became open schemas. This imports the module, as
 * a worker does (its import-time side effects run once more).
 */
export function describeModule(module: string, options: DescribeOptions = {}): Promise<ModuleSchemas> {
  const python = options.python ?? (process.env.PYFLEET_PYTHON || 'python3');
  const base = { ...process.env, ...options.env };
  const env = { ...base, PYTHONPATH: base.PYTHONPATH ? `${PYTHON_PACKAGE_DIR}:${base.PYTHONPATH}` : PYTHON_PACKAGE_DIR };
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-m', 'pyfleet._schema', module],
      { cwd: options.cwd, env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const tail = stderr.trim().split('\n').slice(-20).join('\n');
          reject(new Error(`Cannot read the command schemas of ${module} (${python} -m pyfleet._schema): ${err.message.split('\n')[0]}${tail ? `\n${tail}` : ''}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as ModuleSchemas);
        } catch (e) {
          reject(new Error(`${python} -m pyfleet._schema ${module} printed something that is not JSON: ${(e as Error).message}`));
        }
      },
    );
  });
}
