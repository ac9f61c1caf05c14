/** pyfleet: run Python in a pool of long-lived worker processes that keeps answering when workers fail. */
export { createPool, Pool, PoolSession, type TypedPool, type DetailedResult, type ExecuteOptions, type PoolStats, type StreamOptions, type Via, type WorkerStats } from './pool/pool.js';
export { DEFAULTS } from './defaults.js';
export type { PoolOptions } from './pool/options.js';
export type { ChaosOptions } from './pool/chaos.js';
export * from './errors/index.js';
export * from './resilience/index.js';
export {
  RecoveryOrchestrator,
  DEFAULT_RECOVERY_STRATEGIES,
  type RecoveryActions,
  type RecoveryStep,
  type RecoveryContext,
  type RecoveryMetrics,
  type RecoveryResult,
  type RecoveryTableOverrides,
} from './resilience/recovery/index.js';
export { channels, subscribe, EVENT_NAMES, type EventName, type EventPayloads } from './telemetry/channels.js';
export type { Adapter, AdapterCallOptions } from './adapters/adapter.js';
export { FunctionAdapter } from './adapters/function-adapter.js';
export type { Logger } from './util/logger.js';
export { WORKER_STATES, WORKER_HEALTH, type WorkerState, type WorkerHealth } from './worker/states.js';
export { SingleProcessAdapter, type SingleProcessOptions } from './adapters/single-process.js';
export { NDArray, type DType, type NDArrayData } from './protocol/ndarray.js';
export type { ArgsOf, CommandMap, CommandName, CommandSpec, ExecutableName, ItemOf, ResultOf, TypedSession } from './typing/typed-pool.js';
export type { CommandSchemas, JsonSchema, ModuleSchemas } from './typing/schema.js';
export type { SessionStore, SessionWrite, StoredSession } from './sessions/store.js';
export { fileSessionStore, type FileSessionStoreOptions } from './sessions/file-store.js';
export { MemorySessionStore } from './sessions/memory-store.js';
export type { SessionKey } from './pool/options.js';
