/**
 * Compile-time types for a pool whose commands are known: `createPool<Commands>(...)`, with
 * `Commands` the map that `pyfleet types` writes. Nothing here exists at run time: a typed pool
 * is the same `Pool` object, seen through a narrower interface (`Typed<Pool, C>`, written over
 * the call surface, so this file needs neither the pool nor the fleet).
 *
 * The map's shape (what the generator emits, and all these types read):
 *
 *   interface Commands {
 *     add: { args: AddArgs; result: number };      // an ordinary command
 *     tokens: { args: TokensArgs; item: string };  // a generator: no result, only items
 *   }
 */
import type { DetailedResult, ExecuteOptions, SessionExecuteOptions, SessionStreamOptions, StreamOptions } from '../call/types.js';

/** One command's types. A generator has `item` and no `result`. */
export interface CommandSpec {
  args?: unknown;
  result?: unknown;
  item?: unknown;
}

/** The constraint on a commands map: every entry is a `CommandSpec` (an interface qualifies, no index signature needed). */
export type CommandMap<C> = { [K in keyof C]: CommandSpec };

export type CommandName<C> = keyof C & string;

export type ArgsOf<C, K extends keyof C> = C[K] extends { args: infer A } ? A : unknown;

/** What `execute` resolves with; `never` for a generator (execute refuses it). */
export type ResultOf<C, K extends keyof C> = C[K] extends { result: infer R } ? R : never;

/** What `stream` yields: a generator's item, or an ordinary command's single result. */
export type ItemOf<C, K extends keyof C> = C[K] extends { item: infer I } ? I : C[K] extends { result: infer R } ? R : unknown;

/** The commands `execute` accepts: all but generators. */
export type ExecutableName<C> = { [K in keyof C]: C[K] extends { result: unknown } ? K : never }[keyof C] & string;

/**
 * The parameters after the command name: args may be left out when the command takes no
 * required key (or is untyped), as with an untyped pool.
 */
export type CallRest<A, O> = undefined extends A ? [args?: A, options?: O] : {} extends A ? [args?: A, options?: O] : [args: A, options?: O];

export type { SessionExecuteOptions, SessionStreamOptions, StreamOptions };

/** `pool.session(id)` of a typed pool. */
export interface TypedSession<C extends CommandMap<C>> {
  readonly id: string;
  execute<K extends ExecutableName<C>>(command: K, ...rest: CallRest<ArgsOf<C, K>, SessionExecuteOptions & { detailed?: false }>): Promise<ResultOf<C, K>>;
  execute<K extends ExecutableName<C>>(command: K, args: ArgsOf<C, K>, options: SessionExecuteOptions & { detailed: true }): Promise<DetailedResult<ResultOf<C, K>>>;
  stream<K extends CommandName<C>>(command: K, ...rest: CallRest<ArgsOf<C, K>, SessionStreamOptions>): AsyncIterableIterator<ItemOf<C, K>>;
  close(): Promise<void>;
}

/** `execute`, `stream` and `session` that check command names, args and results at compile time. */
export interface TypedCalls<C extends CommandMap<C>> {
  execute<K extends ExecutableName<C>>(command: K, ...rest: CallRest<ArgsOf<C, K>, ExecuteOptions & { detailed?: false }>): Promise<ResultOf<C, K>>;
  execute<K extends ExecutableName<C>>(command: K, args: ArgsOf<C, K>, options: ExecuteOptions & { detailed: true }): Promise<DetailedResult<ResultOf<C, K>>>;
  stream<K extends CommandName<C>>(command: K, ...rest: CallRest<ArgsOf<C, K>, StreamOptions>): AsyncIterableIterator<ItemOf<C, K>>;
  session(sessionId: string): TypedSession<C>;
}

/** `Base` (a Pool) with its calls typed by the commands map `C`. */
export type Typed<Base, C extends CommandMap<C>> = Omit<Base, 'execute' | 'stream' | 'session'> & TypedCalls<C>;
