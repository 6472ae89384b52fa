#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan and UBSan) into
# build-fuzz/ and runs them over their seed corpora in fuzz/corpus/<target>/,
# after replaying the big crash inputs kept in fuzz/regressions/<target>/.
#   scripts/fuzz.sh --smoke                  every target, a few seconds each (the test suite's run)
#   scripts/fuzz.sh --long SECONDS [TARGET]  every target (or one) for SECONDS each; new inputs
#                                            are kept in build-fuzz/corpus/<target>/
#   scripts/fuzz.sh --build                  build only
# A crash, a sanitizer report or a failed FUZZ_CHECK fails the run; the input
# is saved as build-fuzz/crashes/<target>-crash-<sha1> (docs/security.md says
# what to do with it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=$root/build-fuzz
targets=(policy_text label_policy container_labels docker_json event_filter event_json)

mode=${1:---smoke}
seconds=0
case "$mode" in
  --smoke) ;;
  --build) ;;
  --long)
    seconds=${2:?"--long needs SECONDS"}
    if [ $# -ge 3 ]; then targets=("$3"); fi
    ;;
  *) echo "usage: $0 [--smoke | --long SECONDS [TARGET] | --build]" >&2; exit 2 ;;
esac

cmake -S fuzz -B "$build" -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 >/dev/null
# The machine is shared: two jobs unless told otherwise.
cmake --build "$build" -j"${FUZZ_BUILD_JOBS:-2}" --target "${targets[@]/%/_fuzzer}"
[ "$mode" = --build ] && exit 0

mkdir -p "$build/crashes"
# Leaks are bugs too; odr-violation reports would only be Debian's libraries.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for target in "${targets[@]}"; do
  seeds=$root/fuzz/corpus/$target
  if [ "$mode" = --smoke ]; then
    # New inputs go to a scratch directory: the smoke run never changes the repo's corpus.
    work=$(mktemp -d "$build/smoke-$target.XXXXXX")
    limits=(-runs=200000 -max_total_time=4)
  else
    work=$build/corpus/$target
    mkdir -p "$work"
    limits=(-max_total_time="$seconds")
  fi
  log=$build/$target.log
  # Inputs that once crashed and are too big to seed mutation (fuzz/regressions/): each run once, whole.
  regressions=("$root/fuzz/regressions/$target"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$build/${target}_fuzzer" "${regressions[@]}" >"$build/$target.regressions.log" 2>&1; then
      failed+=("$target")
      echo "   FAILED: $target on a regression input; log $build/$target.regressions.log" >&2
      continue
    fi
    echo "== $target: ${#regressions[@]} regression inputs ok"
  fi
  echo "== $target (${limits[*]})"
  if "$build/${target}_fuzzer" "${limits[@]}" -timeout=25 -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$target-" "$work" "$seeds" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "   ok: $runs execs, $cov, $(ls "$seeds" | wc -l) seeds"
  else
    failed+=("$target")
    echo "   FAILED: $target; log $log" >&2
    grep -E "ERROR|FUZZ_CHECK|runtime error|Test unit written" "$log" | head -20 >&2 || true
  fi
  if [ "$mode" = --smoke ]; then rm -rf "$work"; fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/crashes/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran clean"
