#!/bin/sh
# What a user of an installed ciuic does: install to a prefix, build examples/ against it
# with CMake's find_package and with pkg-config, and run the result under each launcher.
#
#   install_test.sh setup BUILD_DIR SOURCE_DIR WORK_DIR   install + build both ways
#   install_test.sh run LAUNCHER WORK_DIR                  ciuic-run | mpirun | torchrun
#
# Exit status 77 means the launcher is not on this machine (ctest reports a skip).
set -eu

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# The checks every launcher shares: one "rank R/N ... OK" line per rank, nothing wrong.
check_output() { # file nranks what
  for r in $(seq 0 $(($2 - 1))); do
    grep -q "rank $r/$2: .*: OK\$" "$1" || { cat "$1" >&2; fail "$3: no OK line from rank $r of $2"; }
  done
  [ "$(grep -c ': OK$' "$1")" -eq "$2" ] || { cat "$1" >&2; fail "$3: expected exactly $2 OK lines"; }
  if grep -qE "WRONG|FAILED" "$1"; then cat "$1" >&2; fail "$3: wrong result"; fi
  echo "ok: $3"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo $((20000 + $$ % 20000))
}

# A port P with P + 1 free as well (torchrun's MASTER_PORT, and ciuic's root on the next
# one): with other tests' connections about, the port after a free one is often taken.
free_port_pair() {
  python3 -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 1))
    except OSError:
        continue
    print(p); break
' 2>/dev/null || echo $((20000 + $$ % 20000))
}

random_secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

setup() {
  build=$1 src=$2 work=$3
  rm -rf "$work"
  mkdir -p "$work"
  prefix=$work/prefix
  cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }
  [ -x "$prefix/bin/ciuic-run" ] || fail "ciuic-run was not installed"
  [ -f "$prefix/include/ciuic/ciuic.h" ] || fail "the header was not installed"
  pc=$(find "$prefix" -name ciuic.pc | head -n 1)
  [ -n "$pc" ] || fail "no ciuic.pc under $prefix"
  pcdir=$(dirname "$pc")
  libdir=$(dirname "$pcdir") # lib, lib64 or lib/<multiarch>: wherever the .pc file went
  ls "$libdir"/libciuic.so* >/dev/null 2>&1 || fail "no libciuic.so in $libdir"

  # CMake: find_package(ciuic) through CMAKE_PREFIX_PATH.
  cmake -S "$src/examples" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "configuring examples with find_package"; }
  cmake --build "$work/cmake" >>"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "building examples with CMake"; }

  # pkg-config, through the examples' Makefile.
  mkdir -p "$work/pkgconfig"
  PKG_CONFIG_PATH=$pcdir make -C "$work/pkgconfig" -f "$src/examples/Makefile" >"$work/make.log" 2>&1 ||
    { cat "$work/make.log"; fail "building examples with pkg-config"; }
  case "$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags ciuic)" in
    *"$prefix"*) ;;
    *) fail "pkg-config points outside the install prefix: $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags ciuic)" ;;
  esac

  for exe in "$work/cmake/trainer" "$work/pkgconfig/trainer"; do
    [ -x "$exe" ] || fail "$exe was not built"
    LD_LIBRARY_PATH=$libdir ldd "$exe" | grep -q "$libdir/libciuic.so" ||
      fail "$exe does not load the installed libciuic: $(LD_LIBRARY_PATH=$libdir ldd "$exe")"
  done
  echo "$libdir" >"$work/libdir"
  echo "ok: installed to $prefix, built with find_package and pkg-config"
}

run() {
  launcher=$1 work=$2
  if [ "$launcher" = mpirun ] && ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: no mpirun on PATH"
    exit 77
  fi
  [ -f "$work/libdir" ] || fail "setup has not run (no $work/libdir)"
  libdir=$(cat "$work/libdir")
  prefix=$work/prefix
  LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LD_LIBRARY_PATH
  for build in cmake pkgconfig; do
    exe=$work/$build/trainer
    out=$work/$launcher-$build.out
    case "$launcher" in
      ciuic-run)
        "$prefix/bin/ciuic-run" -n 4 --timeout-ms 120000 -- "$exe" >"$out" 2>&1 || { cat "$out"; fail "ciuic-run ($build)"; }
        check_output "$out" 4 "ciuic-run -n 4, built with $build"
        ;;
      mpirun)
        root=127.0.0.1:$(free_port)
        timeout 120 mpirun --allow-run-as-root --oversubscribe -np 3 \
          -x LD_LIBRARY_PATH -x CIUIC_ROOT="$root" -x CIUIC_SECRET="$(random_secret)" \
          "$exe" >"$out" 2>&1 || { cat "$out"; fail "mpirun ($build)"; }
        check_output "$out" 3 "mpirun -np 3, built with $build"
        ;;
      torchrun)
        # What torchrun sets for each worker; its own store would hold MASTER_PORT, so
        # ciuic's root takes MASTER_PORT + 1. A rank that cannot reach the root fails by its
        # deadline (60 s), with a message, before the launch's own 120 s limit.
        port=$(free_port_pair)
        : >"$out"
        pids=
        for r in 0 1 2; do
          RANK=$r LOCAL_RANK=$r WORLD_SIZE=3 LOCAL_WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
            TORCHELASTIC_RUN_ID="install-test-$$" CIUIC_TIMEOUT_MS=60000 timeout 120 "$exe" \
            >"$out.$r" 2>&1 &
          pids="$pids $!"
        done
        status=0
        for pid in $pids; do wait "$pid" || status=$?; done
        cat "$out".0 "$out".1 "$out".2 >"$out"
        [ "$status" -eq 0 ] || { cat "$out"; fail "torchrun-style launch ($build): a rank exited $status"; }
        check_output "$out" 3 "torchrun environment, 3 ranks, built with $build"
        ;;
      *) fail "unknown launcher $launcher" ;;
    esac
  done
}

case "${1:-}" in
  setup) shift; setup "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 setup BUILD_DIR SOURCE_DIR WORK_DIR | run LAUNCHER WORK_DIR" >&2; exit 2 ;;
esac
