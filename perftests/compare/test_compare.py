"""Tests of compare.py: reading the --json format, the ratios, skips that never crash,
and (when the build has it) a short real run of the MPI baseline."""

import contextlib
import io
import json
import os
import shutil
import stat
import tempfile
import unittest

import compare

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def run_main(argv):
    """Runs compare.main, returning (exit code, printed output)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = compare.main(argv)
    return code, out.getvalue()


class ParseTest(unittest.TestCase):
    def test_reads_ciuic_perf_document(self):
        result = compare.load_result(os.path.join(FIXTURES, "ciuic-allreduce-n4.json"))
        self.assertEqual(result["collective"], "allreduce")
        self.assertEqual(result["nranks"], 4)
        self.assertEqual(sorted(result["rows"]), [8, 1048576, 4194304])
        row = result["rows"][1048576]
        self.assertAlmostEqual(row["time_us"], 123.4)
        self.assertAlmostEqual(row["busbw"], 12.75)  # out of place, not in place
        self.assertEqual(result["rows"][4194304]["wrong"], 3)

    def test_malformed_documents_are_errors_not_crashes(self):
        with tempfile.TemporaryDirectory() as d:
            for name, text in (("empty", ""), ("list", "[]"), ("nosize", '{"results":[{}]}'),
                               ("nodata", '{"results":[{"size":8}]}'),
                               ("badnum", '{"results":[{"size":8,"out_of_place":'
                                          '{"time_us":"x","algbw_gbps":1,"busbw_gbps":1}}]}')):
                path = os.path.join(d, name)
                with open(path, "w") as f:
                    f.write(text)
                with self.assertRaises(compare.ResultError, msg=name):
                    compare.load_result(path)
            with self.assertRaises(compare.ResultError):
                compare.load_result(os.path.join(d, "missing.json"))

    def test_skipped_variant_is_left_out(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")
            with open(path, "w") as f:
                f.write('{"results":[{"size":8,"out_of_place":null,"in_place":null},'
                        '{"size":16,"out_of_place":null,"in_place":{"time_us":2,'
                        '"algbw_gbps":0.5,"busbw_gbps":0.75,"wrong":0}}]}')
            rows = compare.load_result(path)["rows"]
            self.assertEqual(list(rows), [16])
            self.assertEqual(rows[16]["busbw"], 0.75)

    def test_sizes(self):
        self.assertEqual(compare.parse_size("8"), 8)
        self.assertEqual(compare.parse_size("64K"), 65536)
        self.assertEqual(compare.parse_size("128M"), 128 << 20)
        self.assertEqual(compare.format_size(128 << 20), "128M")
        self.assertEqual(compare.format_size(1000), "1000")


class RatioTest(unittest.TestCase):
    def test_ratios_against_mpi(self):
        results = {
            "ciuic": compare.load_result(os.path.join(FIXTURES, "ciuic-allreduce-n4.json")),
            "mpi": compare.load_result(os.path.join(FIXTURES, "mpi-allreduce-n4.json")),
        }
        rows = {r["size"]: r for r in compare.compare_rows(results)}
        self.assertAlmostEqual(rows[1048576]["busbw_ratio_mpi"], 2.0)  # 12.75 / 6.375
        self.assertAlmostEqual(rows[8]["time_ratio_mpi"], 2.0)  # 40 us / 20 us
        self.assertIsNone(rows[4194304]["busbw_ratio_mpi"])  # MPI has no such size
        self.assertIsNone(rows[8]["busbw_ratio_gloo"])  # no Gloo at all
        text = "\n".join(compare.markdown_for("allreduce", 4, results))
        self.assertIn("| 1M | 123.4 | 12.750 | 246.8 | 6.375 | 2.00 | — | — | — |", text)
        self.assertIn("3 wrong!", text)
        self.assertIn("time ratio ciuic / MPI 2.00", text)

    def test_from_dir_renders_tables_and_json(self):
        with tempfile.TemporaryDirectory() as out:
            code, printed = run_main(["--from-dir", FIXTURES, "--ranks", "4", "--out-dir", out])
            self.assertEqual(code, 0)
            self.assertIn("skipped: Gloo allreduce n=4", printed)
            self.assertIn("| allreduce | 4 | 2.00 | — |", printed)
            with open(os.path.join(out, "compare.json")) as f:
                doc = json.load(f)
            ratios = {(r["collective"], r["size"]): r for r in doc["ratios"]}
            self.assertAlmostEqual(ratios[("allreduce", 1048576)]["busbw_ciuic_over_mpi"], 2.0)


class RunTest(unittest.TestCase):
    """compare.py running programs: a stand-in ciuic-perf, and missing baselines."""

    def setUp(self):
        self.build = tempfile.mkdtemp(prefix="compare-build-")
        self.out = os.path.join(self.build, "out")
        perf_dir = os.path.join(self.build, "perftests")
        os.makedirs(perf_dir)
        perf = os.path.join(perf_dir, "ciuic-perf")
        shutil.copy(os.path.join(FIXTURES, "fake-ciuic-perf"), perf)
        os.chmod(perf, os.stat(perf).st_mode | stat.S_IXUSR)

    def tearDown(self):
        shutil.rmtree(self.build, ignore_errors=True)

    def test_missing_baselines_are_skipped_not_fatal(self):
        code, printed = run_main(["--build-dir", self.build, "--ranks", "2,3", "-b", "8",
                                  "-e", "1K", "-f", "4", "--out-dir", self.out])
        self.assertEqual(code, 0, printed)
        for n in (2, 3):
            for coll in ("allreduce", "allgather"):
                self.assertIn("ran: ciuic %s n=%d" % (coll, n), printed)
                self.assertIn(
                    "skipped: Open MPI %s n=%d: mpi_allreduce_bench not built" % (coll, n), printed)
                self.assertIn("skipped: Gloo %s n=%d: gloo_allreduce_bench not built" % (coll, n),
                              printed)
        with open(os.path.join(self.out, "compare.json")) as f:
            doc = json.load(f)
        runs = {(r["library"], r["collective"], r["nranks"]): r for r in doc["runs"]}
        # The stand-in reports busbw = nranks; the sweep 8, 32, 128, 512 bytes came through.
        run = runs[("ciuic", "allgather", 3)]
        self.assertEqual([r["size"] for r in run["results"]], [8, 32, 128, 512])
        self.assertEqual(run["results"][0]["busbw"], 3.0)

    def test_failing_program_is_skipped_with_its_reason(self):
        with open(os.path.join(self.build, "perftests", "ciuic-perf"), "w") as f:
            f.write("#!/bin/sh\necho 'rank 1: connection refused' >&2\nexit 3\n")
        code, printed = run_main(["--build-dir", self.build, "--ranks", "2", "--collectives",
                                  "allreduce", "--libraries", "ciuic", "--out-dir", self.out])
        self.assertEqual(code, 1)  # nothing measured at all
        self.assertIn("skipped: ciuic allreduce n=2: exited with 3: rank 1: connection refused",
                      printed)

    def test_wire_picks_the_same_path_for_ciuic_and_open_mpi(self):
        import argparse
        for wire, btl, local in (("tcp", "self,tcp", "none"), ("shm", "self,vader", "auto")):
            args = argparse.Namespace(build_dir=self.build, ifname="lo", wire=wire,
                                      min_bytes=8, max_bytes=64, factor=2, iters=1, warmup=0,
                                      mpirun="sh")
            command, env = compare.plan_run("ciuic", "allreduce", 2, args, "x.json", self.out)
            self.assertEqual(env["CIUIC_LOCAL_TRANSPORT"], local, wire)
            prefix = compare.mpirun_prefix("mpirun", 2, wire)
            self.assertEqual(prefix[prefix.index("btl") + 1], btl, wire)

    def test_nothing_built_at_all(self):
        empty = os.path.join(self.build, "empty")
        os.makedirs(empty)
        code, printed = run_main(["--build-dir", empty, "--ranks", "2", "--out-dir", self.out])
        self.assertEqual(code, 1)
        self.assertIn("skipped: ciuic allreduce n=2: ciuic-perf not built", printed)


@unittest.skipUnless(
    os.access(os.path.join(os.environ.get("CIUIC_BUILD_DIR", "/nonexistent"), "perftests",
                           "compare", "mpi_allreduce_bench"), os.X_OK) and shutil.which("mpirun"),
    "mpi_allreduce_bench is not built or mpirun is missing")
class RealMpiTest(unittest.TestCase):
    def test_short_mpi_sweep(self):
        with tempfile.TemporaryDirectory() as out:
            code, printed = run_main(["--build-dir", os.environ["CIUIC_BUILD_DIR"], "--ranks", "2",
                                      "--libraries", "mpi", "-b", "8", "-e", "4K", "-f", "8",
                                      "-n", "3", "-w", "1", "--out-dir", out, "--timeout", "120"])
            self.assertEqual(code, 0, printed)
            result = compare.load_result(os.path.join(out, "mpi-allreduce-n2.json"))
            self.assertEqual(sorted(result["rows"]), [8, 64, 512, 4096])
            for row in result["rows"].values():
                self.assertEqual(row["wrong"], 0)
                self.assertGreater(row["time_us"], 0)
                # busbw = algbw * 2(n-1)/n = algbw for 2 ranks
                self.assertAlmostEqual(row["busbw"], row["algbw"], places=5)
            gathered = compare.load_result(os.path.join(out, "mpi-allgather-n2.json"))
            self.assertEqual(sorted(gathered["rows"]), [8, 64, 512, 4096])
            for row in gathered["rows"].values():
                self.assertAlmostEqual(row["busbw"], row["algbw"] / 2, places=5)


@unittest.skipUnless(
    all(os.access(os.path.join(os.environ.get("CIUIC_BUILD_DIR", "/nonexistent"), *parts), os.X_OK)
        for parts in (("perftests", "compare", "gloo_allreduce_bench"),
                      ("tools", "ciuic-run", "ciuic-run"))),
    "gloo_allreduce_bench or ciuic-run is not built")
class RealGlooTest(unittest.TestCase):
    def test_short_gloo_sweep_through_ciuic_run(self):
        with tempfile.TemporaryDirectory() as out:
            code, printed = run_main(["--build-dir", os.environ["CIUIC_BUILD_DIR"], "--ranks", "3",
                                      "--libraries", "gloo", "-b", "12", "-e", "3K", "-f", "16",
                                      "-n", "2", "-w", "1", "--out-dir", out, "--timeout", "120"])
            self.assertEqual(code, 0, printed)
            result = compare.load_result(os.path.join(out, "gloo-allreduce-n3.json"))
            self.assertEqual(sorted(result["rows"]), [12, 192, 3072])
            for row in result["rows"].values():
                self.assertEqual(row["wrong"], 0)
                self.assertAlmostEqual(row["busbw"], row["algbw"] * 4 / 3, places=5)
            # All-gather sizes are whole receive buffers: 12 B is one float per rank.
            gathered = compare.load_result(os.path.join(out, "gloo-allgather-n3.json"))
            self.assertEqual(sorted(gathered["rows"]), [12, 192, 3072])
            self.assertEqual(max(r["wrong"] for r in gathered["rows"].values()), 0)


if __name__ == "__main__":
    unittest.main()
