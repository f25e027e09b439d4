#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz for a bounded time (docs/fuzzing.md); `make fuzz` calls it
# after building them with clang in the fuzz build folder.
#
#   scripts/fuzz.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]     (default: every tests/fuzz/fuzz_*.c)
#
# Each target runs alone, in one process, on a copy of its corpus tests/fuzz/corpus/<target>/ in
# BUILD_DIR/fuzz-work/<target>/, so the repository is never modified; inputs that found new coverage
# stay in that copy. tests/fuzz/<target>.dict, where there is one, is its libFuzzer dictionary. A crash, leak, timeout, out-of-memory or sanitizer report fails the run: the
# reproducer is left in BUILD_DIR/fuzz-work/<target>/findings/ and printed in base64 (so that it can
# be recovered from a CI log), and the script exits 1 after running the remaining targets.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi
# One core per target, whatever OpenMP would pick; OpenMP threads wait passively.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
failed=()
for t in "${targets[@]}"; do
  bin="$build/$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is missing (build with -DDPFORMER_FUZZ=ON; make fuzz does)" >&2
    exit 2
  fi
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/findings"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s ($(ls "$work/corpus" | wc -l) corpus inputs)"
  start=$(date +%s)
  # -timeout: one input taking this long is a hang; -rss_limit_mb also caps single allocations.
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  "$bin" "$work/corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$work/findings/" >"$work/log" 2>&1
  rc=$?
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE' "$work/log" | sed "s/^/fuzz: $t: /"
  if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/findings")" ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit status $rc) after $(( $(date +%s) - start ))s; end of its log:" >&2
    tail -n 60 "$work/log" >&2
    for f in "$work/findings"/*; do
      [ -f "$f" ] || continue
      echo "fuzz: reproducer $f ($(wc -c <"$f") bytes), base64:" >&2
      head -c 65536 "$f" | base64 >&2
    done
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (docs/fuzzing.md: how to add a reproducer to the corpus)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no finding"
