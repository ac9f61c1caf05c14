import { PoolError } from '../errors/pool-error.js';
import type { CircuitBreaker } from '../resilience/circuit-breaker.js';
import { CircuitRegistry, POOL_OPERATIONS, commandCircuitName } from '../resilience/circuit-registry.js';
import type { Logger } from '../util/logger.js';
import type { ResolvedOptions } from './options.js';

const isTimeout = (e: unknown): boolean => e instanceof PoolError && e.code === 'PYFLEET_TIMEOUT';
// pool_operations counts deaths and failed starts where the supervisor sees them, once each;
// what an attempt fails with never counts there (a success still closes a trial or resets the count).
const never = (): boolean => false;

/**
 * A pool's circuits: `pool_operations` (worker deaths and failed starts) and one
 * `worker_commands:<command>` per command (its timeouts), in the pool's registry.
 */
export class PoolCircuits {
  readonly registry: CircuitRegistry;
  readonly poolOps: CircuitBreaker;
  private readonly byCommand = new Map<string, CircuitBreaker>();
  /** pool_operations was opened because no worker could start: it half-opens when one does. */
  private openedWhileDown = false;

  constructor(poolId: number, options: ResolvedOptions, logger: Logger) {
    this.registry = new CircuitRegistry({ ...options.circuitBreaker, poolId });
    this.poolOps = this.registry.get(POOL_OPERATIONS, { isFailure: never });
    this.registry.onStateChange((c) => logger[c.to === 'open' ? 'warn' : 'info']({ poolId, circuit: c.circuit, from: c.from, to: c.to, reason: c.reason }, `circuit ${c.circuit} ${c.to}`));
  }

  command(command: string): CircuitBreaker {
    let c = this.byCommand.get(command);
    if (c === undefined) {
      c = this.registry.get(commandCircuitName(command), { isFailure: isTimeout });
      this.byCommand.set(command, c);
    }
    return c;
  }

  /** Opened by the recovery because no worker could start. */
  markOpenedWhileDown(): void {
    this.openedWhileDown = true;
  }

  /**
   * A circuit opened because no worker could start need not wait out its timeout once one has:
   * trial calls find out at once. (Not after crashes: a new worker is no evidence that the calls
   * which killed the old ones are gone, and trials would feed it to them.)
   */
  workerReady(): void {
    if (this.openedWhileDown) {
      this.openedWhileDown = false;
      this.poolOps.halfOpen('worker_ready');
    }
  }
}
