#!/usr/bin/env python3
"""ciuic-perf against Open MPI and Gloo on this machine, same sizes, one command.

For each rank count (--ranks 2,4) and collective (allreduce, allgather) it runs
  ciuic-perf   <build>/perftests/ciuic-perf <coll> -N n ... --json FILE (spawns its ranks)
  Open MPI     mpirun ... <build>/perftests/compare/mpi_allreduce_bench ... --json FILE
  Gloo         ciuic-run -n n -- <build>/perftests/compare/gloo_allreduce_bench ... --json FILE
and prints Markdown tables of busbw ratios (ciuic / MPI, ciuic / Gloo) and the
small-message time ratio, writes every number to compare.json, and a busbw-vs-size
plot to compare.png when matplotlib imports. A baseline that is missing or fails is
reported as "skipped: <why>" and the rest goes on.

All three programs write the same JSON document (the format of `ciuic-perf --json`),
so one reader serves them all. --from-dir re-renders the tables from saved JSONs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

LIBRARIES = ("ciuic", "mpi", "gloo")
LABELS = {"ciuic": "ciuic", "mpi": "Open MPI", "gloo": "Gloo"}
COLLECTIVES = ("allreduce", "allgather")


def parse_size(text):
    """'8', '64K', '128M', '1G' -> bytes (powers of 1024)."""
    text = str(text).strip().upper().rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    value = int(float(number) * scale)
    if value < 1:
        raise argparse.ArgumentTypeError("size must be at least 1 byte: %r" % text)
    return value


def format_size(size):
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return "%d%s" % (size // scale, unit)
    return "%d" % size


# ---- reading results ----

class ResultError(Exception):
    pass


def load_result(path):
    """Reads one --json document into {collective, nranks, library, rows: {size: row}}.

    A row is {time_us, algbw, busbw, wrong} of the out-of-place run (the baselines
    measure out of place only).
    """
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ResultError("cannot read %s: %s" % (path, e))
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ResultError("%s: no 'results' list" % path)
    rows = {}
    for entry in doc["results"]:
        try:
            size = int(entry["size"])
            if "out_of_place" not in entry and "in_place" not in entry:
                raise KeyError("out_of_place")
            measured = entry.get("out_of_place") or entry.get("in_place")
            if measured is None:  # ciuic-perf writes null for a variant it skipped
                continue
            rows[size] = {
                "time_us": float(measured["time_us"]),
                "algbw": float(measured["algbw_gbps"]),
                "busbw": float(measured["busbw_gbps"]),
                "wrong": int(measured.get("wrong", 0)),
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ResultError("%s: malformed result %r (%s)" % (path, entry, e))
    return {
        "collective": doc.get("collective"),
        "nranks": doc.get("nranks"),
        "library": doc.get("library") or doc.get("transport") or "",
        "rows": rows,
    }


# ---- running ----

def sweep_args(args):
    return ["-b", str(args.min_bytes), "-e", str(args.max_bytes), "-f", str(args.factor),
            "-n", str(args.iters), "-w", str(args.warmup)]


def mpirun_prefix(mpirun, nranks, wire="tcp"):
    # The same wire for everyone: TCP over loopback (ciuic's TCP transport, Open MPI's tcp
    # BTL), or shared memory (ciuic's shm transport, Open MPI's vader BTL).
    btl = "self,vader" if wire == "shm" else "self,tcp"
    return [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(nranks),
            "--bind-to", "none", "--mca", "btl", btl, "--mca", "pml", "ob1",
            "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]


def plan_run(library, collective, nranks, args, json_path, work_dir):
    """(command, env) for one run, or (None, reason) when it cannot run here."""
    build = args.build_dir
    env = dict(os.environ)
    if library == "ciuic":
        perf = os.path.join(build, "perftests", "ciuic-perf")
        if not os.access(perf, os.X_OK):
            return None, "ciuic-perf not built (%s missing)" % perf
        env["CIUIC_SOCKET_IFNAME"] = args.ifname
        # tcp: every byte over TCP, as Open MPI's tcp BTL; shm: ranks of this host over
        # the shared-memory transport (the default), as Open MPI's vader BTL.
        env["CIUIC_LOCAL_TRANSPORT"] = "auto" if getattr(args, "wire", "tcp") == "shm" else "none"
        return ([perf, collective, "-N", str(nranks)] + sweep_args(args) + ["--json", json_path],
                env)
    flag = ["--allgather"] if collective == "allgather" else []
    if library == "mpi":
        bench = os.path.join(build, "perftests", "compare", "mpi_allreduce_bench")
        if not os.access(bench, os.X_OK):
            return None, ("mpi_allreduce_bench not built (%s missing: CMake found no MPI?)"
                          % bench)
        mpirun = shutil.which(args.mpirun)
        if mpirun is None:
            return None, "no %s on PATH" % args.mpirun
        return (mpirun_prefix(mpirun, nranks, getattr(args, "wire", "tcp")) + [bench] + flag
                + sweep_args(args)
                + ["--json", json_path], env)
    if library == "gloo":
        bench = os.path.join(build, "perftests", "compare", "gloo_allreduce_bench")
        if not os.access(bench, os.X_OK):
            return None, ("gloo_allreduce_bench not built (%s missing: CMake found no Gloo?)"
                          % bench)
        store = tempfile.mkdtemp(prefix="gloo-store-", dir=work_dir)
        tail = [bench] + flag + sweep_args(args) + [
            "--algo", args.gloo_algo, "--store-dir", store, "--json", json_path]
        launcher = os.path.join(build, "tools", "ciuic-run", "ciuic-run")
        if os.access(launcher, os.X_OK):
            return [launcher, "-n", str(nranks), "--"] + tail, env
        mpirun = shutil.which(args.mpirun)
        if mpirun is None:
            return None, "neither ciuic-run (%s) nor %s to start Gloo's ranks" % (
                launcher, args.mpirun)
        return mpirun_prefix(mpirun, nranks) + tail, env
    raise ValueError(library)


def run_one(library, collective, nranks, args, out_dir, work_dir, log):
    """Runs one measurement. Returns (result or None, status line)."""
    name = "%s-%s-n%d" % (library, collective, nranks)
    json_path = os.path.join(out_dir, name + ".json")
    command, env = plan_run(library, collective, nranks, args, json_path, work_dir)
    if command is None:
        return None, "skipped: %s %s n=%d: %s" % (LABELS[library], collective, nranks, env)
    log_path = os.path.join(out_dir, name + ".log")
    log("running: %s" % " ".join(command))
    if os.path.exists(json_path):
        os.remove(json_path)
    start = time.monotonic()
    try:
        with open(log_path, "w") as log_file:
            proc = subprocess.run(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return None, "skipped: %s %s n=%d: timed out after %d s (see %s)" % (
            LABELS[library], collective, nranks, args.timeout, log_path)
    except OSError as e:
        return None, "skipped: %s %s n=%d: cannot start: %s" % (
            LABELS[library], collective, nranks, e)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        return None, "skipped: %s %s n=%d: exited with %d: %s (see %s)" % (
            LABELS[library], collective, nranks, proc.returncode, last_line(log_path), log_path)
    try:
        result = load_result(json_path)
    except ResultError as e:
        return None, "skipped: %s %s n=%d: %s" % (LABELS[library], collective, nranks, e)
    result["command"] = command
    return result, "ran: %s %s n=%d in %.1f s" % (LABELS[library], collective, nranks, elapsed)


def last_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1] if lines else "no output"
    except OSError:
        return "no log"


# ---- tables ----

def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def cell(value, fmt="%.3f"):
    return "—" if value is None else fmt % value


def compare_rows(results):
    """Per size: busbw of each library and the ratios; results maps library -> result."""
    sizes = sorted(set().union(*[set(r["rows"]) for r in results.values()])) if results else []
    rows = []
    for size in sizes:
        row = {"size": size}
        for library in LIBRARIES:
            measured = results.get(library, {"rows": {}})["rows"].get(size)
            row[library] = measured
        ciuic = row["ciuic"]
        for base in ("mpi", "gloo"):
            row["busbw_ratio_" + base] = ratio(ciuic and ciuic["busbw"],
                                               row[base] and row[base]["busbw"])
            row["time_ratio_" + base] = ratio(ciuic and ciuic["time_us"],
                                              row[base] and row[base]["time_us"])
        rows.append(row)
    return rows


def small_message_row(rows):
    """The smallest size that ciuic and at least one baseline both measured."""
    for row in rows:
        if row["ciuic"] and (row["mpi"] or row["gloo"]):
            return row
    return None


def markdown_for(collective, nranks, results):
    rows = compare_rows(results)
    out = ["### %s, %d ranks" % (collective, nranks), ""]
    if not rows:
        return out + ["No results.", ""]
    out.append("| size | ciuic µs | ciuic busbw | MPI µs | MPI busbw | ciuic / MPI "
               "| Gloo µs | Gloo busbw | ciuic / Gloo |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        def measured(library):
            m = row[library]
            if m is None:
                return "— | —"
            wrong = " (%d wrong!)" % m["wrong"] if m["wrong"] else ""
            return "%.1f | %.3f%s" % (m["time_us"], m["busbw"], wrong)
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            format_size(row["size"]), measured("ciuic"), measured("mpi"),
            cell(row["busbw_ratio_mpi"], "%.2f"), measured("gloo"),
            cell(row["busbw_ratio_gloo"], "%.2f")))
    out.append("")
    out.append("Time in µs, busbw in GB/s, out of place; a busbw ratio above 1 means ciuic "
               "moves more.")
    small = small_message_row(rows)
    if small:
        times = ", ".join("%s %.1f us" % (LABELS[lib], small[lib]["time_us"])
                          for lib in LIBRARIES if small[lib])
        out.append("Latency at %s B: %s; time ratio ciuic / MPI %s, ciuic / Gloo %s "
                   "(below 1 means ciuic is faster)." % (
                       small["size"], times, cell(small["time_ratio_mpi"], "%.2f"),
                       cell(small["time_ratio_gloo"], "%.2f")))
    out.append("")
    return out


def summary_markdown(table):
    out = ["| collective | ranks | small-msg time ciuic / MPI | ciuic / Gloo "
           "| largest-size busbw ciuic / MPI | ciuic / Gloo |", "|---|---:|---:|---:|---:|---:|"]
    for (collective, nranks), rows in sorted(table.items()):
        small = small_message_row(rows)
        large = next((r for r in reversed(rows) if r["ciuic"]), None)
        out.append("| %s | %d | %s | %s | %s | %s |" % (
            collective, nranks,
            cell(small and small["time_ratio_mpi"], "%.2f"),
            cell(small and small["time_ratio_gloo"], "%.2f"),
            cell(large and large["busbw_ratio_mpi"], "%.2f"),
            cell(large and large["busbw_ratio_gloo"], "%.2f")))
    return out + [""]


def plot(all_results, path, log):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        log("skipped: plot: matplotlib does not import (%s)" % e)
        return False
    keys = sorted(all_results)
    if not keys:
        return False
    # One row per collective, one column per rank count.
    collectives = sorted({k[0] for k in keys})
    rank_counts = sorted({k[1] for k in keys})
    fig, axes = plt.subplots(len(collectives), len(rank_counts), squeeze=False,
                             figsize=(5.5 * len(rank_counts), 4.2 * len(collectives)))
    for key in keys:
        ax = axes[collectives.index(key[0])][rank_counts.index(key[1])]
        for library in LIBRARIES:
            result = all_results[key].get(library)
            if not result or not result["rows"]:
                continue
            sizes = sorted(result["rows"])
            ax.plot(sizes, [result["rows"][s]["busbw"] for s in sizes], marker="o",
                    markersize=3, label=LABELS[library])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title("%s, %d ranks" % key)
        ax.set_xlabel("size (bytes)")
        ax.set_ylabel("busbw (GB/s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- main ----

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default="build", help="ciuic build directory (default: build)")
    p.add_argument("--ranks", default="2,4", help="rank counts, comma-separated (default 2,4)")
    p.add_argument("--collectives", default="allreduce,allgather")
    p.add_argument("--libraries", default="ciuic,mpi,gloo", help="which to run (default: all)")
    p.add_argument("-b", dest="min_bytes", type=parse_size, default=8)
    p.add_argument("-e", dest="max_bytes", type=parse_size, default=128 << 20)
    p.add_argument("-f", dest="factor", type=int, default=4)
    p.add_argument("-n", dest="iters", type=int, default=20)
    p.add_argument("-w", dest="warmup", type=int, default=5)
    p.add_argument("--gloo-algo", default="ring", choices=("ring", "default"))
    p.add_argument("--mpirun", default="mpirun")
    p.add_argument("--ifname", default="lo", help="CIUIC_SOCKET_IFNAME for ciuic (default lo)")
    p.add_argument("--wire", default="tcp", choices=("tcp", "shm"),
                   help="tcp: ciuic and Open MPI over loopback TCP (default); shm: ciuic's "
                        "shared-memory transport beside Open MPI's vader BTL (Gloo stays on TCP)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run (default 900)")
    p.add_argument("--out-dir", default="compare-results", help="where JSON, logs, plot go")
    p.add_argument("--from-dir", help="read <lib>-<coll>-n<N>.json from here; run nothing")
    args = p.parse_args(argv)
    try:
        args.ranks = [int(x) for x in args.ranks.split(",") if x]
    except ValueError:
        p.error("--ranks takes integers, e.g. 2,4")
    args.collectives = [c for c in args.collectives.split(",") if c]
    args.libraries = [l for l in args.libraries.split(",") if l]
    for c in args.collectives:
        if c not in COLLECTIVES:
            p.error("unknown collective %r (have: %s)" % (c, ", ".join(COLLECTIVES)))
    for l in args.libraries:
        if l not in LIBRARIES:
            p.error("unknown library %r (have: %s)" % (l, ", ".join(LIBRARIES)))
    if args.factor < 2 or args.max_bytes < args.min_bytes or not args.ranks:
        p.error("need -f >= 2, -b <= -e and at least one rank count")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out_dir, exist_ok=True)
    messages = []

    def log(line):
        messages.append(line)
        print(line, flush=True)

    all_results = {}  # (collective, nranks) -> {library: result}
    work_dir = tempfile.mkdtemp(prefix="ciuic-compare-")
    try:
        for nranks in args.ranks:
            for collective in args.collectives:
                for library in args.libraries:
                    key = (collective, nranks)
                    if args.from_dir:
                        path = os.path.join(args.from_dir,
                                            "%s-%s-n%d.json" % (library, collective, nranks))
                        if not os.path.exists(path):
                            log("skipped: %s %s n=%d: no %s" % (
                                LABELS[library], collective, nranks, path))
                            continue
                        try:
                            result = load_result(path)
                        except ResultError as e:
                            log("skipped: %s %s n=%d: %s" % (
                                LABELS[library], collective, nranks, e))
                            continue
                    else:
                        result, status = run_one(library, collective, nranks, args,
                                                 args.out_dir, work_dir, log)
                        log(status)
                        if result is None:
                            continue
                    all_results.setdefault(key, {})[library] = result
                    bad = sum(r["wrong"] for r in result["rows"].values())
                    if bad:
                        log("warning: %s %s n=%d reported %d wrong elements" % (
                            LABELS[library], collective, nranks, bad))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    tables = {key: compare_rows(results) for key, results in all_results.items()}
    lines = ["## ciuic vs Open MPI vs Gloo", "",
             "Sweep -b %d -e %d -f %d, %d timed + %d warm-up iterations, float32; host %s, "
             "%d CPUs." % (args.min_bytes, args.max_bytes, args.factor, args.iters, args.warmup,
                           os.uname().nodename, os.cpu_count() or 0), ""]
    if tables:
        lines += summary_markdown(tables)
    for key in sorted(all_results):
        lines += markdown_for(key[0], key[1], all_results[key])
    markdown = "\n".join(lines)
    print()
    print(markdown)
    with open(os.path.join(args.out_dir, "compare.md"), "w") as f:
        f.write(markdown + "\n")

    png = os.path.join(args.out_dir, "compare.png")
    plotted = plot(all_results, png, log)
    document = {
        "config": {k: getattr(args, k) for k in (
            "build_dir", "ranks", "collectives", "libraries", "min_bytes", "max_bytes",
            "factor", "iters", "warmup", "gloo_algo", "ifname")},
        "runs": [
            {"collective": key[0], "nranks": key[1], "library": library,
             "version": result["library"], "command": result.get("command"),
             "results": [dict(size=s, **row) for s, row in sorted(result["rows"].items())]}
            for key, by_lib in sorted(all_results.items()) for library, result in by_lib.items()],
        "ratios": [
            {"collective": key[0], "nranks": key[1], "size": row["size"],
             "busbw_ciuic_over_mpi": row["busbw_ratio_mpi"],
             "busbw_ciuic_over_gloo": row["busbw_ratio_gloo"],
             "time_ciuic_over_mpi": row["time_ratio_mpi"],
             "time_ciuic_over_gloo": row["time_ratio_gloo"]}
            for key, rows in sorted(tables.items()) for row in rows],
        "messages": messages,
    }
    with open(os.path.join(args.out_dir, "compare.json"), "w") as f:
        json.dump(document, f, indent=1)
    print("\nwrote %s%s" % (os.path.join(args.out_dir, "compare.json"),
                            " and " + png if plotted else ""))
    return 0 if all_results else 1


if __name__ == "__main__":
    sys.exit(main())
