/** Checking a call's args against its command's JSON Schema (Ajv, compiled once per command). */
export { ArgsValidator, invalidArgs, type ArgsSchemaSource, type ArgsValidatorOptions } from './args-validator.js';
export { createAjv, type ValidationMode } from './ajv.js';
export { describeErrors, fieldPath, type ArgsProblem } from './messages.js';
