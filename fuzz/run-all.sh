#!/usr/bin/env bash
# Build every fuzz target once, then run each for MINUTES (default 10), one at a time, niced.
# Usage: fuzz/run-all.sh [MINUTES] [TARGET...]
#   FUZZ_SANITIZER=none   build without AddressSanitizer (faster, catches panics only)
#   CARGO_LOCK=path       lock file that serialises cargo on a shared machine
# Logs: fuzz/logs/<target>.log; corpus: fuzz/corpus/<target>; crashes: fuzz/artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")"

minutes=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(normalize cache_control accept_encoding if_none_match surrogate_key config)
fi
sanitizer=${FUZZ_SANITIZER:-address}
lock=${CARGO_LOCK:-/tmp/cargo-build.lock}

# cargo-fuzz needs nightly-only -Z flags; the stable compiler accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
flock "$lock" cargo fuzz build -s "$sanitizer" || exit 1
host=$(rustc -vV | sed -n 's/^host: //p')
bindir=target/$host/release

mkdir -p logs
failed=0
printf '%-16s %8s %12s %8s %8s %s\n' target minutes execs cov ft crashes > logs/summary.txt
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  extra=()
  [ -d "seeds/$t" ] && extra+=("seeds/$t")
  [ -f "dicts/$t.dict" ] && extra+=("-dict=dicts/$t.dict")
  echo "fuzzing $t for $minutes min -> logs/$t.log"
  # The outer timeout only guards against a hung process; libFuzzer stops itself on time.
  timeout $((minutes * 60 + 300)) nice -n 19 "$bindir/$t" "corpus/$t" "${extra[@]}" \
    -max_total_time=$((minutes * 60)) -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && failed=1
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(find "artifacts/$t" -type f | wc -l)
  printf '%-16s %8s %12s %8s %8s %s\n' "$t" "$minutes" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "$crashes$([ $rc -ne 0 ] && echo " (exit $rc)")" >>logs/summary.txt
done
cat logs/summary.txt
exit $failed
