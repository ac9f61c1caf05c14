/** Typed commands: schemas from Python hints, TypeScript from schemas, and typed pools. */
export type { ArgsOf, CallRest, CommandMap, CommandName, CommandSpec, ExecutableName, ItemOf, ResultOf, StreamOptions, Typed, TypedCalls, TypedSession } from './typed-pool.js';
export { BINARY_KEYWORD, hasSchemas, type BinaryKind, type CommandSchemas, type JsonSchema, type JsonSchemaObject, type ModuleSchemas } from './schema.js';
export { declarations, type DeclarationOptions } from './declarations.js';
export { describeModule, type DescribeOptions } from './introspect.js';
