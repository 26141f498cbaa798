#!/usr/bin/env bash
# What ezq's statistics cost: the benchmark binary built twice, as usual and
# with `--cfg ezq_no_stats` (which compiles every counter and wait timer
# out), then the same pipeline cells run by both builds in alternation,
# each run in a child process of its own.
#
#   bash benches/stats-cost.sh [REPS]     (default 5 repetitions; about 2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"

bench_binary() {
    cargo bench --bench pipeline --no-run --locked --message-format=json "$@" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "pipeline":
        print(msg["executable"])'
}

with_stats="$(bench_binary)"
without_stats="$(RUSTFLAGS="--cfg ezq_no_stats" CARGO_TARGET_DIR=target/no-stats bench_binary)"
[ -x "$with_stats" ] && [ -x "$without_stats" ] || {
    echo "could not build both benchmark binaries" >&2
    exit 1
}

n=10000000
cells=("sum pipeline 1" "sum pipeline 2" "collatz pipeline 1" "collatz pipeline 2" "sum pipeline-batch 2" "collatz pipeline-batch 2" "sum pipeline-writer 2" "collatz pipeline-writer 2")
echo "statistics cost: N = $n, median ns/msg of $reps alternating runs per build"
printf '%-26s %12s %12s %8s\n' "cell" "stats on" "stats off" "on/off"
for cell in "${cells[@]}"; do
    read -r topology variant w <<<"$cell"
    on=()
    off=()
    for _ in $(seq "$reps"); do
        on+=("$("$with_stats" child "$topology" "$variant" "$n" "$w" | sed -n 's/.* ns=\([0-9]*\).*/\1/p')")
        off+=("$("$without_stats" child "$topology" "$variant" "$n" "$w" | sed -n 's/.* ns=\([0-9]*\).*/\1/p')")
    done
    python3 - "$n" "$topology $variant W=$w" "${on[*]}" "${off[*]}" <<'EOF'
import statistics, sys
n, name, on, off = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
on = statistics.median(int(x) for x in on) / n
off = statistics.median(int(x) for x in off) / n
print(f"{name:<26} {on:12.1f} {off:12.1f} {on / off:8.2f}")
EOF
done
