#!/usr/bin/env python3
"""The shm transport beside TCP, measured in one run.

Runs `ciuic-perf transport bw|lat` (two ranks, two processes on this host) for each
configuration and size, in interleaved rounds so that load changes hit every column
alike, and prints the median of the rounds as a Markdown table:

  shm           CIUIC_SHM_CMA=auto: large messages by single-copy CMA where it works
  shm-copy      CIUIC_SHM_CMA=off: every message through the shared ring
  tcp           the TCP transport over lo

    perftests/shm_compare.py --build build [--rounds 3] [--sizes 64K,2M,16M,128M]

Bandwidth is the receiver's GB/s (10^9 bytes/s) with 32 messages in flight; latency is
half the round trip of an 8-byte ping-pong (median of the samples).
"""
import argparse
import os
import statistics
import subprocess
import sys

CONFIGS = [
    ("shm", "shm", {"CIUIC_SHM_CMA": "auto"}),
    ("shm-copy", "shm", {"CIUIC_SHM_CMA": "off"}),
    ("tcp", "tcp", {}),
]


def run(perf, transport, env_extra, mode, size, iters):
    env = dict(os.environ, CIUIC_SOCKET_IFNAME="lo", **env_extra)
    cmd = [perf, "transport", mode, "--transport", transport, "-N", "2", "-b", size, "-e", size,
           "-n", str(iters), "-w", "5" if mode == "lat" else "20"]
    for attempt in range(3):  # a run that fails to start is retried, never counted
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        rows = [l.split() for l in p.stdout.splitlines() if l.strip() and not l.startswith("#")]
        if p.returncode == 0 and rows:
            # bw: bytes iterations GB/s Mpps; lat: bytes iterations min avg p50 p99
            return float(rows[-1][2] if mode == "bw" else rows[-1][4])
        sys.stderr.write(f"retry {' '.join(cmd)}: {p.stderr.strip()[-300:]}\n")
    return float("nan")


def parse_size(text):
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * scale[text[-1]] if text[-1] in scale else int(text)


def bw_iters(size, total):
    # ciuic-perf runs -n x 50 messages up to 64 KiB, -n above: move about `total` bytes,
    # so that the two ranks' start-up skew (milliseconds) is small beside the transfer.
    per = parse_size(size) * (50 if parse_size(size) <= 65536 else 1)
    return max(20, total // per)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="64K,2M,16M,128M")
    ap.add_argument("--total", default="4G", help="bytes each bandwidth run moves")
    args = ap.parse_args()
    perf = os.path.join(args.build, "perftests", "ciuic-perf")
    sizes = args.sizes.split(",")
    results = {}  # (config, what) -> [values]
    for r in range(args.rounds):
        for name, transport, env in CONFIGS:
            results.setdefault((name, "8 B lat"), []).append(
                run(perf, transport, env, "lat", "8", 2000))
            for size in sizes:
                results.setdefault((name, size), []).append(
                    run(perf, transport, env, "bw", size, bw_iters(size, parse_size(args.total))))
        sys.stderr.write(f"round {r + 1} of {args.rounds} done\n")
    cols = ["8 B lat"] + sizes
    print(f"| transport | 8 B latency (µs, p50) | " +
          " | ".join(f"{s} (GB/s)" for s in sizes) + " |")
    print("| --- | " + " | ".join("---:" for _ in cols) + " |")
    for name, _, _ in CONFIGS:
        cells = []
        for c in cols:
            v = results[(name, c)]
            cells.append(f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nmedian (min–max) of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
