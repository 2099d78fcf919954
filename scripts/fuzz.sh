#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang-14, ASan + UBSan) in build-fuzz/ and runs each one in
# turn from its seed corpus (fuzz/corpus/<target>/). See fuzz/README.md.
#   scripts/fuzz.sh [--seconds N | --runs N] [TARGET...]     default: --seconds 30, every target
# TARGET is wire, http, peer or config. New inputs go to build-fuzz/corpus/<target>/ (the seeds in
# the repo are only read); a crash is written to build-fuzz/artifacts/ and fails the script.
# BUILD_DIR overrides the build folder's prefix (BUILD_DIR-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}-fuzz
limit=(-max_total_time=30)
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(wire http peer config)

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUNDERSTUDY_FUZZ=ON \
  -DUNDERSTUDY_LAB_TESTS=OFF -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
ninja -C "$build" "${targets[@]/#/fuzz_}"

mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  echo "== fuzz_$t ${limit[*]}"
  log="$build/fuzz_$t.log"
  # The first corpus folder receives new inputs; the repo's seeds are read only.
  if "$build/fuzz/fuzz_$t" "${limit[@]}" "${dict[@]}" -print_final_stats=1 -timeout=25 \
    -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" "fuzz/corpus/$t" \
    </dev/null >"$log" 2>&1; then
    grep -E '^#[0-9]+ +DONE' "$log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
  else
    tail -40 "$log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crash or error in: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]}: no crash"
