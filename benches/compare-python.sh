#!/usr/bin/env bash
# Python ezq (the seed) against Rust ezq on the seed README's sum example.
#
#   benches/compare-python.sh [N]        (N defaults to 100000)
#
# Makes a virtualenv under a temporary directory, installs Python ezq from
# PyPI, runs benches/python_sum.py at N, runs the Rust `sum` topology at the
# same N with num_cpus() workers (`cargo bench --bench pipeline --
# python-compare N`, median of 9 runs of each variant), and prints both rates
# and their ratio. Exits non-zero if anything fails or a result is wrong.
#
# The Python version: the latest release, 3.0.4, moved to methods on a `Q`
# class and no longer has the functions the seed README's example calls
# (put_msg, iter_msg, iter_q, endq_and_wait), so the script pins 2.0.2, the
# version whose function API the seed README documents. (2.0.3 has the same
# functions; EZQ_PY_VERSION=2.0.3 runs it instead.)
set -euo pipefail

N="${1:-100000}"
EZQ_PY_VERSION="${EZQ_PY_VERSION:-2.0.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/bench-target}"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== Python ezq $EZQ_PY_VERSION in a virtualenv under $TMP"
python3 -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check "ezq==$EZQ_PY_VERSION"
"$PY" - <<'PYCHECK'
import ezq
missing = [f for f in ("Queue", "put_msg", "iter_msg", "iter_q", "endq_and_wait", "run", "NUM_CPUS")
           if not hasattr(ezq, f)]
if missing:
    raise SystemExit(f"ezq {ezq.__version__} lacks the seed README's functions: {missing}")
PYCHECK

echo "== Python: seed README sum example, N=$N"
py_out="$("$PY" "$HERE/python_sum.py" "$N")"
echo "$py_out"
py_rate="$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$py_out")"
[[ -n "$py_rate" ]] || { echo "no rate in the Python output" >&2; exit 1; }

echo "== Rust: the sum topology, N=$N (cargo bench --bench pipeline -- python-compare $N)"
rust_out="$(cd "$ROOT" && cargo bench --quiet --bench pipeline -- python-compare "$N")"
echo "$rust_out"

echo "== Rates (messages per second)"
printf 'python ezq %-12s %14.0f msg/s\n' "$EZQ_PY_VERSION" "$py_rate"
status=0
for variant in runtime-api pipeline; do
    rust_rate="$(sed -n "s/^rust_sum variant=$variant .* rate=\([0-9.]*\).*/\1/p" <<<"$rust_out")"
    if [[ -z "$rust_rate" ]]; then
        echo "no rate for Rust variant $variant" >&2
        status=1
        continue
    fi
    awk -v v="$variant" -v r="$rust_rate" -v p="$py_rate" 'BEGIN {
        printf "rust ezq   %-12s %14.0f msg/s   rust/python = %.0fx\n", v, r, r / p
    }'
done
exit "$status"
