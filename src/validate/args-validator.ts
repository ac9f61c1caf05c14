import { PoolError } from '../errors/pool-error.js';
import { isOpen, type JsonSchema } from '../typing/schema.js';
import { createAjv, type ValidateFunction, type ValidationMode } from './ajv.js';
import { describeErrors, type ArgsProblem } from './messages.js';

/** Where the validator finds a command's args schema (undefined: the command has none, nothing is checked). */
export type ArgsSchemaSource = (command: string) => JsonSchema | null | undefined;

export interface ArgsValidatorOptions {
  schemas: ArgsSchemaSource;
  /** `pool` (default): binary values are Buffers / typed arrays. `http`: base64 strings, replaced by Buffers once valid. */
  mode?: ValidationMode;
}

interface Compiled {
  schema: JsonSchema;
  fn: ValidateFunction | null; // null: an open schema, nothing to check
}

/**
 * Checks a call's args against its command's schema before anything is sent to a worker.
 * Each command's schema is compiled once, on its first call: Ajv generates a JavaScript function
 * per schema, which takes 20-45 ms (once per command; bench/validate.ts) and then checks a small
 * args object in about 30 ns. A
 * command whose schema object changes (new workers with another version of the module) is
 * compiled again, once per distinct schema.
 */
export class ArgsValidator {
  private readonly ajv;
  private readonly source: ArgsSchemaSource;
  readonly mode: ValidationMode;
  private readonly compiled = new Map<string, Compiled>();
  private readonly byText = new Map<string, ValidateFunction | null>();
  /** Schemas compiled so far (one per distinct schema). */
  compilations = 0;

  constructor(options: ArgsValidatorOptions) {
    this.source = options.schemas;
    this.mode = options.mode ?? 'pool';
    this.ajv = createAjv(this.mode);
  }

  private validatorFor(command: string): ValidateFunction | null {
    const schema = this.source(command);
    if (schema === undefined || schema === null) return null;
    const hit = this.compiled.get(command);
    if (hit !== undefined && hit.schema === schema) return hit.fn;
    const text = JSON.stringify(schema);
    let fn = this.byText.get(text);
    if (fn === undefined) {
      fn = isOpen(schema) ? null : this.ajv.compile(schema as object);
      if (fn !== null) this.compilations++;
      this.byText.set(text, fn);
    }
    this.compiled.set(command, { schema, fn });
    return fn;
  }

  /**
   * The problem with `args` for `command`, or null when they fit (or there is no schema).
   * In `http` mode, base64 strings where the schema says binary are replaced by Buffers in
   * `holder.args`; read the args back from there.
   */
  problem(command: string, args: unknown, holder?: { args: unknown }): ArgsProblem | null {
    const fn = this.validatorFor(command);
    if (fn === null) return null;
    // A holder as the parent lets the binary keyword replace even the args themselves.
    const box = holder ?? { args };
    const ok = this.mode === 'http' ? fn(args, { instancePath: '', parentData: box, parentDataProperty: 'args', rootData: box, dynamicAnchors: {} }) : fn(args);
    if (ok) return null;
    return describeErrors(fn.errors ?? [], this.mode);
  }

  /** A `PYFLEET_INVALID_ARGS` PoolError for a call whose args do not fit, or null. */
  check(command: string, args: unknown, holder?: { args: unknown }): PoolError | null {
    const p = this.problem(command, args, holder);
    return p === null ? null : invalidArgs(command, p);
  }
}

export function invalidArgs(command: string, p: ArgsProblem): PoolError {
  return new PoolError({
    code: 'PYFLEET_INVALID_ARGS',
    message: `Invalid arguments for ${JSON.stringify(command)}: ${p.message}. Nothing was sent to a worker.`,
    command,
    details: { field: p.field, expected: p.expected, keyword: p.keyword },
  });
}
