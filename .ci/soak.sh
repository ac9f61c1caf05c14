#!/usr/bin/env bash
# Bounded chaos soak for CI (issue 5, item 3; issues 12 and 13): `pyfleet chaos` with every
# fault on, for at most 2 minutes in all, on a pool with concurrency 4 whose workload mixes
# plain, async and threaded calls, streams, binary args and results, and durable sessions.
# Fails (non-zero exit) when any invariant breaks: a call lost or answered twice, a duplicated
# side effect, a wrong answer (stream items out of order or missing, a binary checksum that
# differs), a session state silently empty, older or another session's, a broken stream not
# reported as PYFLEET_STREAM_BROKEN, an orphaned worker process, or fewer than 99% of
# idempotent calls succeeding.
#
# Environment (all optional):
#   SOAK_DURATION  seconds of load (default 60; the drain, close and checks add a few seconds)
#   SOAK_WORKERS   worker processes (default 2)
#   SOAK_POOL_CONCURRENCY  async/threaded calls one worker runs at once (default 4)
#   SOAK_SEED      seed of the faults and the workload (default: random, printed for a replay)
#   SOAK_ARGS      extra arguments for `pyfleet chaos`
#   PYFLEET_PYTHON the interpreter
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION="${SOAK_DURATION:-60}"
WORKERS="${SOAK_WORKERS:-2}"
POOL_CONCURRENCY="${SOAK_POOL_CONCURRENCY:-4}"
SEED="${SOAK_SEED:-$(( (RANDOM << 15 | RANDOM) % 2147483647 ))}"
LIMIT=120          # the whole soak, in seconds
# Leave time for start-up, drain (in-flight calls finish or count as lost), close and checks.
if (( DURATION > LIMIT - 40 )); then
  echo "soak: SOAK_DURATION=$DURATION leaves no room under the ${LIMIT} s limit; using $(( LIMIT - 40 ))" >&2
  DURATION=$(( LIMIT - 40 ))
fi
DRAIN_MS=$(( (LIMIT - 10 - DURATION - 15) * 1000 ))

# Prefer the built CLI (what users run); fall back to the TypeScript sources through tsx.
if [[ -f dist/cli/main.js ]]; then
  CLI=(node dist/cli/main.js)
else
  CLI=(node --import tsx src/cli/main.ts)
fi

REPORT="$(mktemp -t pyfleet-soak.XXXXXX.json)"
trap 'rm -f "$REPORT"' EXIT

echo "soak: pyfleet chaos --duration $DURATION --workers $WORKERS --pool-concurrency $POOL_CONCURRENCY --seed $SEED (all faults on, every kind of call, limit ${LIMIT} s)"
set +e
# timeout: SIGTERM makes pyfleet chaos stop, drain and report; SIGKILL 10 s later if it does not.
timeout --kill-after=10 $(( LIMIT - 10 )) "${CLI[@]}" chaos \
  --duration "$DURATION" --workers "$WORKERS" --pool-concurrency "$POOL_CONCURRENCY" --seed "$SEED" --faults all \
  --drain-timeout "$DRAIN_MS" --json ${SOAK_ARGS:-} >"$REPORT"
STATUS=$?
set -e

if [[ ! -s "$REPORT" ]]; then
  echo "soak: FAILED: no report (exit status $STATUS; 124/137: over the ${LIMIT} s limit)" >&2
  exit 1
fi

# A readable summary from the JSON report.
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const f = (k) => `${k} ${JSON.stringify(r[k])}`;
console.log(["sent", "settled", "succeeded", "failed", "lost", "answeredTwice", "duplicateSideEffects", "orphans", "idempotentSuccessRate"].map(f).join(", "));
console.log(`failed by code: ${JSON.stringify(r.failedByCode)}; faults injected: ${JSON.stringify(r.injected)}`);
console.log(`retries ${r.retries}, recoveries ${r.recoveries.initiated} initiated, ${r.recoveries.succeeded} succeeded, circuit openings ${r.circuitOpenings}, worker restarts ${r.workerRestarts.total}, latency ${JSON.stringify(r.latencyMs)}`);
console.log(`by kind: ${Object.entries(r.kinds).map(([k, t]) => `${k} ${t.succeeded}/${t.calls}`).join(", ")}; streams ${JSON.stringify(r.streams)}; at most ${r.maxWorkerInflight} calls at once on one worker`);
console.log(`sessions ${r.session.succeeded}/${r.session.calls} ok, ${r.session.lost} lost; durable: ${JSON.stringify(r.durableSessions)}`);
for (const i of r.invariants) console.log(`  ${i.skipped ? "skip" : i.ok ? "ok  " : "FAIL"} ${i.name} = ${i.value} (must be ${i.expected}${i.skipped ? `; not checked: ${i.skipped}` : ""})`);
' "$REPORT"

if [[ $STATUS -ne 0 ]]; then
  echo "soak: FAILED (exit status $STATUS); replay with SOAK_SEED=$SEED" >&2
  exit 1
fi
echo "soak: every invariant held (seed $SEED)"
