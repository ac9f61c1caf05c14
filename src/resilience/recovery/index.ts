/** Error recovery: the seed's ErrorRecoveryOrchestrator with real actions the pool implements. */
export { RecoveryOrchestrator, nextRecoveryId, type RecoveryOrchestratorOptions } from './orchestrator.js';
export { RecoveryFailure, type Done as RecoveryDone, type RecoveryStep, type Run as RecoveryRun } from './run.js';
export {
  DEFAULT_RECOVERY_STRATEGIES,
  loadRecoveryStrategies,
  loadTimeLimits,
  maxRecoveryTime,
  planRecovery,
  resendForbidden,
} from './strategies.js';
export {
  RECOVERY_TYPES,
  RESENDING_TYPES,
  type ActiveRecovery,
  type RecoveryActionName,
  type RecoveryActions,
  type RecoveryContext,
  type RecoveryCounts,
  type RecoveryEntry,
  type RecoveryMetrics,
  type RecoveryOutcome,
  type RecoveryPlan,
  type RecoveryResult,
  type RecoveryTable,
  type RecoveryTableOverrides,
  type RecoveryTimeLimits,
  type RecoveryType,
} from './types.js';
