"""Fallbacks for a worker started by hand, without the host's environment.

The host always sets these variables (src/worker/env.ts, src/pool/supervisor.ts) from its
DEFAULTS (src/defaults.ts), the one place option defaults live; test/defaults-parity.test.ts
fails when a value here drifts from it.
"""

MAX_FRAME = 64 << 20  # maxFrameBytes
HEARTBEAT_MS = 1000  # healthCheck.intervalMs
CONCURRENCY = 1  # concurrency
MAX_SESSION_BYTES = 16 << 20  # maxSessionBytes
