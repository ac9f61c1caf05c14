import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | null = null;

/**
 * The package's root folder (where its package.json is), found by walking up from this file,
 * so the CLI finds its bundled files the same way from `src/cli/` (tsx) and `dist/cli/` (built).
 */
export function packageRoot(): string {
  if (root !== null) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pyfleet') return (root = dir);
      } catch {
        // not ours or unreadable: keep walking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find pyfleet's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** The version in package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** A file shipped in the package's `examples/` folder. */
export function exampleFile(name: string): string {
  return path.join(packageRoot(), 'examples', name);
}
