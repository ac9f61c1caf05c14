import type * as Kv from '@nats-io/kv';
import type * as Transport from '@nats-io/transport-node';
import { requireOptional } from '../util/optional.js';

// The NATS client is an optional peer dependency: loaded on the fleet's first use, not on import.
let transport: typeof Transport | undefined;
let kv: typeof Kv | undefined;
export const nats = (): typeof Transport => (transport ??= requireOptional<typeof Transport>('@nats-io/transport-node', 'fleet'));
export const natsKv = (): typeof Kv => (kv ??= requireOptional<typeof Kv>('@nats-io/kv', 'fleet'));
