#!/usr/bin/env python3
"""Faults across several hosts on one machine.

Each rank runs in its own network namespace ("host") with its own address; the hosts hang
off a bridge in a switch namespace, one veth each, so a fault can cut, slow or stall one
host while the others stay healthy. Only these namespaces' addresses carry the traffic.
The ranks are tests/fault/fault_rank (public C API only); the faults come from here:

  kill      a rank SIGKILLed in the middle of a 64 MiB all-reduce on 4 ranks
  linkdown  one host's link set down mid-collective; then up again and a new job works
  loss      5 % packet loss on one host's link (nftables): results stay correct, time reported
  delay     10 ms delay on one link (tc netem) where the kernel has netem, skipped otherwise
  stall     one rank SIGSTOPped longer than CIUIC_TIMEOUT_MS: the others time out naming it
  idle      one host's link set down while every connection is idle: keepalive
            (CIUIC_KEEPALIVE_MS) fails the next all-reduce at once, long before its deadline

Every case counts hangs (a rank that never returned) and checks that each survivor's error
names the culprit. Exit 0 when every case held, 1 otherwise, 77 when namespaces cannot be
made here (not root, no iproute2, no netns support).

  netns_faults.py --build build [--trials N] [--cases kill,linkdown,...] [--json FILE]
"""
import argparse
import json
import os
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time

SKIP = 77
CIUIC_SUCCESS, CIUIC_ERR_REMOTE, CIUIC_ERR_TIMEOUT = 0, 3, 4
RESULT = re.compile(r"^RESULT rank=(\d+) code=(\d+) iter=(-?\d+) start_ns=(\d+) end_ns=(\d+) msg=(.*)$")
KILL = re.compile(r"^KILL rank=(\d+) at_ns=(\d+)$")


def run(*argv, check=True):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Hosts:
    """n namespaces with addresses 10.77.0.1.. on one bridge; removed on exit."""

    def __init__(self, n):
        self.n = n
        tag = f"ciuic{os.getpid()}"
        self.switch = f"{tag}-sw"
        self.hosts = [f"{tag}-h{i}" for i in range(n)]
        self.ports = [f"p{i}" for i in range(n)]

    def address(self, i):
        return f"10.77.0.{i + 1}"

    def __enter__(self):
        try:
            run("ip", "netns", "add", self.switch)
            run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts):
                run("ip", "netns", "add", host)
                run("ip", "-n", host, "link", "add", "eth0", "type", "veth", "peer", "name", self.ports[i],
                    "netns", self.switch)
                run("ip", "-n", host, "addr", "add", self.address(i) + "/24", "dev", "eth0")
                run("ip", "-n", host, "link", "set", "eth0", "up")
                run("ip", "-n", host, "link", "set", "lo", "up")
                run("ip", "-n", self.switch, "link", "set", self.ports[i], "master", "br0")
                run("ip", "-n", self.switch, "link", "set", self.ports[i], "up")
        except subprocess.CalledProcessError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for ns in self.hosts + [self.switch]:
            run("ip", "netns", "del", ns, check=False)

    def set_link(self, i, up):
        run("ip", "-n", self.switch, "link", "set", self.ports[i], "up" if up else "down")

    def set_loss(self, i, percent):
        """Drops percent % of host i's packets in both directions (nftables; no netem needed)."""
        run("ip", "netns", "exec", self.hosts[i], "nft", "delete", "table", "inet", "ciuicloss", check=False)
        if percent <= 0:
            return
        rules = ("table inet ciuicloss {\n"
                 " chain out { type filter hook output priority 0; numgen random mod 100 < %d drop; }\n"
                 " chain in { type filter hook input priority 0; numgen random mod 100 < %d drop; }\n"
                 "}\n" % (percent, percent))
        subprocess.run(["ip", "netns", "exec", self.hosts[i], "nft", "-f", "-"], input=rules, text=True,
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def set_delay(self, i, ms):
        """True when netem could add the delay (the kernel must have sch_netem)."""
        if ms <= 0:
            run("ip", "netns", "exec", self.hosts[i], "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
            return True
        return run("ip", "netns", "exec", self.hosts[i], "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                   "delay", f"{ms}ms", check=False).returncode == 0

    def launch(self, build, rank_args, timeout_ms, port, extra_env=None):
        secret = secrets.token_hex(16)
        procs = []
        for i, host in enumerate(self.hosts):
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CIUIC_RANK": str(i), "CIUIC_WORLD_SIZE": str(self.n),
                "CIUIC_ROOT": f"{self.address(0)}:{port}", "CIUIC_SECRET": secret,
                "CIUIC_SOCKET_IFNAME": "eth0", "CIUIC_TIMEOUT_MS": str(timeout_ms),
            }
            for name, value in os.environ.items():  # the caller's own CIUIC_* settings win
                if name.startswith("CIUIC_") and name not in ("CIUIC_RANK", "CIUIC_WORLD_SIZE", "CIUIC_ROOT",
                                                              "CIUIC_SECRET", "CIUIC_SOCKET_IFNAME",
                                                              "CIUIC_TIMEOUT_MS", "CIUIC_BUILD_DIR"):
                    env[name] = value
            env.update(extra_env or {})
            argv = ["ip", "netns", "exec", host, os.path.join(build, "tests", "fault_rank")] + rank_args
            # ip netns exec execs the program: the pid is the rank's, so signals reach it.
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        return procs


class Job:
    def __init__(self, procs):
        self.procs = procs
        self.results = {}   # rank -> dict(code, iter, start_ns, end_ns, msg)
        self.killed_at = {}
        self.hung = []
        self.output = []
        self.early = {rank: [] for rank in range(len(procs))}  # lines read by wait_for_line

    def wait_for_line(self, prefix, limit_s):
        """Reads each rank's output until it printed a line starting with prefix."""
        deadline = time.monotonic() + limit_s
        for rank, proc in enumerate(self.procs):
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    return False
                line = proc.stdout.readline()
                if not line:
                    return False
                self.early[rank].append(line.rstrip("\n"))
                if line.startswith(prefix):
                    break
        return True

    def wait(self, limit_s):
        """Waits for every rank up to limit_s; a rank still running then is a hang."""
        deadline = time.monotonic() + limit_s
        for rank, proc in enumerate(self.procs):
            try:
                out, _ = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.hung.append(rank)
                proc.kill()
                out, _ = proc.communicate()
            for line in self.early.get(rank, []) + out.splitlines():
                self.output.append(f"[{rank}] {line}")
                m = RESULT.match(line)
                if m:
                    self.results[int(m[1])] = dict(code=int(m[2]), iter=int(m[3]), start_ns=int(m[4]),
                                                   end_ns=int(m[5]), msg=m[6])
                m = KILL.match(line)
                if m:
                    self.killed_at[int(m[1])] = int(m[2])
        return self

    def text(self):
        return "\n".join(self.output[-40:])


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def leads_to(job, rank, culprit):
    """True when rank's error names the culprit, or names a rank whose error leads there.

    When every rank times out at once (a silent link: nothing fails before the deadline),
    each names the peer it waited on; in a ring, following those names from any rank
    reaches the one that never sent."""
    seen, frontier = {rank}, [rank]
    while frontier:
        msg = job.results.get(frontier.pop(), {}).get("msg", "")
        for named in {int(x) for x in re.findall(r"rank (\d+)", msg)}:
            if named == culprit:
                return True
            if named not in seen:
                seen.add(named)
                frontier.append(named)
    return False


class Case:
    def __init__(self, name):
        self.name, self.trials, self.hangs, self.failures, self.latencies_ms, self.notes = name, 0, 0, [], [], []
        self.example = ""  # one survivor's error message, as the user sees it

    def fail(self, what, job=None):
        self.failures.append(what)
        print(f"  FAIL {self.name}: {what}" + (f"\n{job.text()}" if job else ""), flush=True)

    def check_survivors(self, job, culprit, since_ns, limit_ms, ranks):
        """Every rank but the culprit returned a peer failure naming `rank <culprit>` within limit_ms."""
        self.hangs += len([r for r in job.hung if r != culprit])
        for rank in ranks:
            if rank == culprit:
                continue
            r = job.results.get(rank)
            if r is None:
                self.fail(f"rank {rank} never reported (hang or crash)", job)
                continue
            if r["code"] not in (CIUIC_ERR_REMOTE, CIUIC_ERR_TIMEOUT):
                self.fail(f"rank {rank}: code {r['code']} is not a peer failure: {r['msg']}", job)
            if not leads_to(job, rank, culprit):
                self.fail(f"rank {rank}'s error leads nowhere near rank {culprit}: {r['msg']}", job)
            latency = (r["end_ns"] - max(since_ns, r["start_ns"])) / 1e6
            self.latencies_ms.append(latency)
            if not self.example:
                self.example = f"rank {rank}: {r['msg']}"
            if latency > limit_ms:
                self.fail(f"rank {rank} took {latency:.0f} ms after the fault (limit {limit_ms} ms)", job)

    def summary(self):
        lat = sorted(self.latencies_ms)
        out = dict(case=self.name, trials=self.trials, hangs=self.hangs, failures=len(self.failures),
                   notes=self.notes)
        if self.example:
            out["example_error"] = self.example
        if lat:
            out.update(fault_to_error_ms_median=round(statistics.median(lat), 1),
                       fault_to_error_ms_max=round(lat[-1], 1))
        return out


def all_succeeded(case, job, n, iters):
    ok = True
    for rank in range(n):
        r = job.results.get(rank)
        if r is None or r["code"] != CIUIC_SUCCESS or r["iter"] != iters:
            case.fail(f"rank {rank} did not finish {iters} correct all-reduces: {r}", job)
            ok = False
    case.hangs += len(job.hung)
    return ok


def next_port(state=[29600 + os.getpid() % 2000]):
    state[0] += 1
    return state[0]


def case_kill(args, hosts):
    case = Case("kill")
    count = 16 << 20  # 64 MiB of float32
    timeout_ms = 20000
    for trial in range(args.trials):
        victim = 1 + trial % (hosts.n - 1)  # rank 0 also serves the bootstrap store
        delay_us = (trial * 7919) % 60000
        job = Job(hosts.launch(args.build, ["die", str(count), str(victim), str(delay_us)], timeout_ms,
                               next_port())).wait(timeout_ms / 1000 + 20)
        case.trials += 1
        if victim not in job.killed_at:
            case.fail(f"trial {trial}: rank {victim} never reached its kill point", job)
            continue
        case.check_survivors(job, victim, job.killed_at[victim], timeout_ms, range(hosts.n))
    return case


def fault_mid_loop(args, hosts, victim, timeout_ms, inject, undo, hold_s):
    """Starts a long all-reduce loop, injects a fault after 1 s, returns (job, fault time)."""
    procs = hosts.launch(args.build, ["loop", str(1 << 20), "1000000"], timeout_ms, next_port())
    time.sleep(1.0)
    fault_ns = now_ns()
    inject(procs[victim])
    time.sleep(hold_s)
    job = Job(procs)
    # The survivors must be done by the deadline plus slack; the victim is cleaned up after.
    survivors = [p for i, p in enumerate(procs) if i != victim]
    deadline = time.monotonic() + timeout_ms / 1000 + 15 - hold_s
    for p in survivors:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    undo(procs[victim])
    return job.wait(10), fault_ns


def case_linkdown(args, hosts):
    case = Case("linkdown")
    timeout_ms = 3000
    for trial in range(max(1, args.trials // 10)):
        victim = 1 + trial % (hosts.n - 1)
        job, fault_ns = fault_mid_loop(
            args, hosts, victim, timeout_ms,
            inject=lambda p: hosts.set_link(victim, False),
            undo=lambda p: (p.kill() if p.poll() is None else None), hold_s=0)
        case.trials += 1
        case.check_survivors(job, victim, fault_ns, timeout_ms + 5000, range(hosts.n))
        hosts.set_link(victim, True)
        again = Job(hosts.launch(args.build, ["loop", str(1 << 18), "5"], timeout_ms * 5, next_port())).wait(60)
        all_succeeded(case, again, hosts.n, 5)
    case.notes.append("link restored: a new job on the same hosts completed")
    return case


def timed_loop(args, hosts, iters, count):
    start = time.monotonic()
    job = Job(hosts.launch(args.build, ["loop", str(count), str(iters)], 60000, next_port())).wait(120)
    return job, time.monotonic() - start


def case_impaired_link(args, hosts, name, impair, restore, note):
    case = Case(name)
    iters, count = 20, 1 << 18  # 1 MiB all-reduces
    base_job, base_s = timed_loop(args, hosts, iters, count)
    all_succeeded(case, base_job, hosts.n, iters)
    ratios = []
    for trial in range(max(1, args.trials // 10)):
        if impair() is False:
            case.notes.append("skipped: " + note)
            return case
        if name == "delay" and trial == 0:  # what the kernel says it applies, beside the time it took
            shown = run("ip", "netns", "exec", hosts.hosts[1], "tc", "qdisc", "show", "dev", "eth0", check=False)
            case.notes.append("host 1: " + " ".join(shown.stdout.split()[:12]))
        try:
            job, impaired_s = timed_loop(args, hosts, iters, count)
        finally:
            restore()
        case.trials += 1
        if all_succeeded(case, job, hosts.n, iters):
            ratios.append(impaired_s / base_s)
    if ratios:
        ratios.sort()
        case.notes.append(f"{iters} x 1 MiB all-reduce on 4 ranks, {len(ratios)} impaired runs with results "
                          f"correct: {base_s:.2f} s clean, impaired / clean {ratios[0]:.1f}x min, "
                          f"{ratios[len(ratios) // 2]:.1f}x median, {ratios[-1]:.1f}x max")
    return case


def case_loss(args, hosts):
    return case_impaired_link(args, hosts, "loss", lambda: hosts.set_loss(1, 5), lambda: hosts.set_loss(1, 0),
                              "nftables unavailable")


def case_delay(args, hosts):
    return case_impaired_link(args, hosts, "delay", lambda: hosts.set_delay(1, 10), lambda: hosts.set_delay(1, 0),
                              "this kernel has no netem qdisc (tc qdisc add ... netem failed)")


def case_stall(args, hosts):
    case = Case("stall")
    timeout_ms = 2000
    for trial in range(max(1, args.trials // 10)):
        victim = 1 + trial % (hosts.n - 1)
        hold_s = timeout_ms / 1000 + 2
        job, fault_ns = fault_mid_loop(
            args, hosts, victim, timeout_ms,
            inject=lambda p: p.send_signal(signal.SIGSTOP),
            undo=lambda p: (p.send_signal(signal.SIGKILL), p.send_signal(signal.SIGCONT)), hold_s=hold_s)
        case.trials += 1
        case.check_survivors(job, victim, fault_ns, timeout_ms + 3000, range(hosts.n))
    return case


def case_idle(args, hosts):
    case = Case("idle")
    timeout_ms, keepalive_ms, idle_ms = 60000, 3000, 7000
    for trial in range(max(1, args.trials // 10)):
        victim = 1 + trial % (hosts.n - 1)
        job = Job(hosts.launch(args.build, ["idle", str(1 << 16), str(idle_ms)], timeout_ms, next_port(),
                               extra_env={"CIUIC_KEEPALIVE_MS": str(keepalive_ms)}))
        # Every rank finished the first all-reduce: every connection is idle now.
        if not job.wait_for_line("IDLE", 60):
            case.fail(f"trial {trial}: the first all-reduce did not finish on every rank", job.wait(30))
            continue
        hosts.set_link(victim, False)
        job.wait(idle_ms / 1000 + keepalive_ms / 1000 + 20)
        hosts.set_link(victim, True)
        case.trials += 1
        # The second all-reduce starts idle_ms after the first; keepalive has failed the
        # victim's connections by then, so it must fail within seconds, not at 60 s.
        for rank in range(hosts.n):
            r = job.results.get(rank)
            if rank != victim and r is not None and r["iter"] != 1:
                case.fail(f"rank {rank} failed in all-reduce #{r['iter'] + 1}, not the one after the idle time", job)
        second_start = {r: v["start_ns"] for r, v in job.results.items() if v["iter"] == 1}
        since = min(second_start.values()) if second_start else 0
        case.check_survivors(job, victim, since, 5000, [r for r in range(hosts.n) if r in second_start])
    case.notes.append(f"link down while idle; CIUIC_KEEPALIVE_MS={keepalive_ms}, CIUIC_TIMEOUT_MS={timeout_ms}")
    return case


CASES = dict(kill=case_kill, linkdown=case_linkdown, loss=case_loss, delay=case_delay, stall=case_stall,
             idle=case_idle)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.environ.get("CIUIC_BUILD_DIR", "build"))
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--trials", type=int, default=3, help="kill trials; linkdown, stall, idle, loss and delay run a tenth")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    rank_binary = os.path.join(args.build, "tests", "fault_rank")
    if not os.access(rank_binary, os.X_OK):
        print(f"netns faults: {rank_binary} is not built", file=sys.stderr)
        return 1
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIP: network namespaces need root and iproute2 (ip)")
        return SKIP
    try:
        hosts = Hosts(args.ranks).__enter__()
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"SKIP: cannot make network namespaces here: {getattr(e, 'output', e)}")
        return SKIP
    summaries = []
    try:
        for name in args.cases.split(","):
            if name == "loss" and shutil.which("nft") is None:
                summaries.append(dict(case=name, trials=0, hangs=0, failures=0, notes=["skipped: no nft"]))
                continue
            print(f"case {name} ...", flush=True)
            case = CASES[name](args, hosts)
            summaries.append(case.summary())
            print("  " + json.dumps(summaries[-1]), flush=True)
    finally:
        hosts.__exit__(None, None, None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summaries, f, indent=1)
    bad = [s for s in summaries if s["hangs"] or s["failures"]]
    print(f"netns faults: {len(summaries)} cases, {sum(s['trials'] for s in summaries)} trials, "
          f"{sum(s['hangs'] for s in summaries)} hangs, {sum(s['failures'] for s in summaries)} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
