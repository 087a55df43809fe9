#!/usr/bin/env bash
# Sanitizer builds and fuzzers; scripts/test.sh runs all of them after the main suite.
#
#   scripts/sanitize.sh [asan] [tsan] [fuzz]      (no argument: all three)
#
#   asan  build-asan/ with AddressSanitizer + UndefinedBehaviorSanitizer (gcc): the unit,
#         integration and fault suites but the schedule checks at 1024 and 4096 ranks (pure
#         computation, minutes under ASan); any report fails the test that triggered it.
#   tsan  build-tsan/ with ThreadSanitizer (gcc): every test where threads meet — the
#         transports, the NCCL plugin harness, the bootstrap store, the C API, send/recv,
#         the hygiene cycles, the launcher — and the collectives at 2 and 3 ranks. The
#         schedule and reduction tests are single-threaded computation and are left out.
#   fuzz  build-fuzz/ with libFuzzer + ASan + UBSan (clang): each tests/fuzz/*_fuzz.cc for
#         FUZZ_SECONDS (default 60) seconds from its corpus in tests/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(( $(nproc) > 1 ? $(nproc) : 2 ))
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(asan tsan fuzz)

# Warnings are the main build's business (-Werror there): instrumented code makes gcc emit
# false maybe-uninitialized warnings inside libstdc++ that would stop these builds. CUDA
# code is compiled by the main build; with no GPU here its tests only skip, so the
# instrumented builds leave it out.
configure() {  # dir, sanitizers, extra cmake arguments...
  local dir=$1 sanitize=$2
  shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCIUIC_WERROR=OFF \
    -DCIUIC_BUILD_BENCHMARKS=OFF -DCIUIC_CUDA=OFF -DCIUIC_SANITIZE="$sanitize" "$@" >/dev/null
}

for kind in "${kinds[@]}"; do
  case $kind in
    asan)
      echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
      configure build-asan address,undefined
      cmake --build build-asan -j "$jobs"
      # The processes the tests start inherit these: a report ends that process non-zero.
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan -j "$jobs" --output-on-failure --timeout 900 -L "unit|integration|fault" \
          -E "ScheduleAtScale|ScheduleAtLargestScale"
      ;;
    tsan)
      echo "== ThreadSanitizer"
      tsan_tests='unit\.(Io/|Tcp|Stripes|StoreTest|HostileClient|NcclPlugin|Ib|UniqueId|LaunchEnv)'
      tsan_tests+='|integration\.(Api|Hygiene|P2P|CiuicRun|RunLocal)'
      tsan_tests+='|integration\.All/CollectivesTest\.MatchesReference/[a-z_]+_[23]ranks'
      # Counts the process's threads, and TSan starts a background thread of its own at a
      # moment the test cannot see (the races it checks for are covered by the rest).
      tsan_skip='TcpWorkersTest\.AbortFromAnotherThreadWhileWorkersRun'
      configure build-tsan thread
      cmake --build build-tsan -j "$jobs"
      TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp" \
        ctest --test-dir build-tsan -j "$jobs" --output-on-failure --timeout 900 -R "$tsan_tests" \
          -E "$tsan_skip"
      ;;
    fuzz)
      echo "== libFuzzer"
      if ! command -v clang++ >/dev/null; then
        echo "fuzz: clang++ is not installed (apt-get install clang libclang-rt-14-dev)" >&2
        exit 1
      fi
      CC=clang CXX=clang++ configure build-fuzz fuzzer,address,undefined
      targets=$(cd tests/fuzz && ls ./*_fuzz.cc | sed 's|^\./||; s|\.cc$||')
      # shellcheck disable=SC2086
      cmake --build build-fuzz -j "$jobs" --target $targets
      for target in $targets; do
        corpus=tests/fuzz/corpus/${target%_fuzz}
        work=$(mktemp -d)
        cp -r "$corpus/." "$work/" 2>/dev/null || true
        echo "-- $target: ${FUZZ_SECONDS:-60} s from $(ls "$corpus" 2>/dev/null | wc -l) corpus inputs"
        # New inputs go to a scratch copy: the committed corpus changes only by hand (-merge=1).
        if ! "build-fuzz/tests/$target" -max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 \
             -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="build-fuzz/$target-" "$work" \
             > "build-fuzz/$target.log" 2>&1; then
          tail -60 "build-fuzz/$target.log"
          echo "fuzz: $target failed; the input is build-fuzz/$target-*" >&2
          exit 1
        fi
        grep -E "^Done|stat::number_of_executed_units" "build-fuzz/$target.log" | head -2
        rm -rf "$work"
      done
      ;;
    *)
      echo "usage: scripts/sanitize.sh [asan] [tsan] [fuzz]" >&2
      exit 2
      ;;
  esac
done
