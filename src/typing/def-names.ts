import { refName, type JsonSchema } from './schema.js';

function refsOf(schema: JsonSchema, out: Set<string>): void {
  if (typeof schema !== 'object' || schema === null) return;
  if (typeof schema.$ref === 'string') out.add(refName(schema.$ref));
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$defs') continue;
    if (Array.isArray(v)) for (const x of v) refsOf(x as JsonSchema, out);
    else if (typeof v === 'object' && v !== null) refsOf(v as JsonSchema, out);
  }
}

/** The defs reachable from `name`, as a canonical string: equal strings mean the same type. */
function closure(name: string, defs: Record<string, JsonSchema>): string {
  const seen = new Set<string>([name]);
  const queue = [name];
  while (queue.length > 0) {
    const refs = new Set<string>();
    refsOf(defs[queue.shift() as string], refs);
    for (const r of refs) {
      if (seen.has(r)) continue;
      seen.add(r);
      queue.push(r);
    }
  }
  return JSON.stringify([...seen].sort().map((n) => [n, defs[n]]));
}

/**
 * One namespace for the `$defs` of many self-contained schemas (every command's args, result
 * and item has its own): the same Python type used by several commands gets one name; two
 * different types with one name (a dataclass as args, where defaults make fields optional, and
 * as a result, where every field is present) get `Name`, then `Name<Suffix>`, then `Name2`...
 */
export class DefNamer {
  private readonly taken = new Map<string, string>(); // name -> closure key ('' when reserved)

  reserve(name: string): void {
    this.taken.set(name, '');
  }

  isTaken(name: string): boolean {
    return this.taken.has(name);
  }

  /**
   * Names the defs of one schema. `variant(closureText)` returns a tag when the type must be
   * told apart by where it is used (binary values are typed by direction, for instance).
   * Returns local name -> global name, and the local names that are new (to be emitted).
   */
  assign(defs: Record<string, JsonSchema>, suffix: string, variant: (closureText: string) => string = () => ''): { names: Map<string, string>; fresh: string[] } {
    const names = new Map<string, string>();
    const fresh: string[] = [];
    for (const d of Object.keys(defs).sort()) {
      const text = closure(d, defs);
      const key = `${variant(text)}${text}`;
      const candidates = [d, `${d}${suffix}`];
      let chosen: string | undefined;
      for (let i = 0; chosen === undefined; i++) {
        const c = i < candidates.length ? candidates[i] : `${d}${i}`;
        if (!this.taken.has(c) || this.taken.get(c) === key) chosen = c;
      }
      names.set(d, chosen);
      if (!this.taken.has(chosen)) {
        this.taken.set(chosen, key);
        fresh.push(d);
      }
    }
    return { names, fresh };
  }
}
