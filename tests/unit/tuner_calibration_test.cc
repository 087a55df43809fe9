// The tuner's cost parameters from where they are measured: the tuner file
// (CIUIC_TUNER_FILE, written by `ciuic-perf calibrate`) parsed strictly and never fatally,
// the environment winning over it, the transports' own figures below both, and decisions
// that follow the parameters (a slow message moves the recursive doubling crossover up; a
// slow network beside fast shared memory makes the hierarchical all-reduce win) without
// two communicators of different transports sharing a cached decision.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/cost_model.h"
#include "coll/tuner.h"
#include "support/scoped_config.h"
#include "unit/tuner_test_helpers.h"

namespace ciuic::coll {
namespace {

using ciuic::testing::ScopedConfig;
using tuner_test::allreduce;

// A file in the test's temporary directory, removed at the end.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = ::testing::TempDir() + "tuner_" + std::to_string(getpid()) + "_" +
            std::to_string(counter_++) + ".txt";
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

const CostSource& source_of(const std::vector<CostSource>& sources, const std::string& param) {
  for (const CostSource& s : sources)
    if (s.param == param) return s;
  static const CostSource none{"(missing)", -1, "(missing)"};
  ADD_FAILURE() << param << " is not among the sources";
  return none;
}

std::shared_ptr<const TransportCosts> costs(std::string network, int64_t net_mbps,
                                            std::string local = "", int64_t local_mbps = 0,
                                            double local_latency_us = 0) {
  auto c = std::make_shared<TransportCosts>();
  c->network = std::move(network);
  c->network_speed_mbps = net_mbps;
  c->local = std::move(local);
  c->local_speed_mbps = local_mbps;
  c->local_latency_us = local_latency_us;
  return c;
}

// ---- the file ----

TEST(TunerFile, ParsesWhatFormatWritesAndToleratesCommentsAndSpaces) {
  TunerFile file;
  file.net_transport = "tcp";
  file.local_transport = "shm";
  file.values = {{"net_alpha_ns", 9055},    {"net_mbps", 1276}, {"local_alpha_ns", 0},
                 {"local_mbps", 100000000}, {"reduce_mbps", 1}, {"exec_overhead_ns", 1000000000},
                 {"net_hop_ns", 700}};
  const std::string text = format_tuner_file(file, {"measured here", "second line"});
  EXPECT_EQ(text.rfind("# measured here\n# second line\n", 0), 0u) << text;
  TunerFile back;
  ASSERT_TRUE(parse_tuner_file(text, "f", &back).ok());
  EXPECT_EQ(back.net_transport, "tcp");
  EXPECT_EQ(back.local_transport, "shm");
  EXPECT_EQ(back.values, file.values);

  TunerFile loose;
  ASSERT_TRUE(
      parse_tuner_file("\r\n  # a comment\n\t net_mbps =  42 \r\n\nreduce_mbps=7", "f", &loose)
          .ok());
  EXPECT_EQ(loose.values.at("net_mbps"), 42);
  EXPECT_EQ(loose.values.at("reduce_mbps"), 7);
  EXPECT_TRUE(loose.net_transport.empty());
}

TEST(TunerFile, RejectsDamagedFilesNamingTheFileTheLineAndTheFault) {
  const struct {
    std::string text;
    const char* says;
  } cases[] = {
      {"net_mbps=10\nnet_alpha_ns=", "line 2: net_alpha_ns has no value"},
      {"net_mbps=10\nnet_alph", "line 2: 'net_alph' is not key=value"},
      {"net_mbps=12abc", "line 1: net_mbps=12abc is not an integer"},
      {"net_mbps=1.5", "is not an integer"},
      {"net_mbps=0x10", "is not an integer"},
      {"net_mbps=99999999999999999999999", "is not an integer"},
      {"net_mbps=0", "net_mbps=0 is out of range (1 to 100000000)"},
      {"net_alpha_ns=-5", "net_alpha_ns=-5 is out of range (0 to 1000000000)"},
      {"reduce_mbps=100000001", "out of range"},
      {"local_alpha_ns=1000000001", "out of range"},
      {"net_mpbs=5", "unknown key 'net_mpbs'"},
      {"net_mbps=5\n# again\nnet_mbps=6", "line 3: net_mbps is given twice"},
      {std::string("net_mbps=5\n\x01\x02\xff\xfe", 14), "line 2: a byte that is not printable"},
      {std::string("net_mbps=5\0"
                   "0",
                   12),
       "line 1: a byte that is not printable"},
      {"net_transport=TCP!", "is not a transport name"},
      {"local_transport=", "local_transport has no value"},
      {std::string(70000, '#'), "larger than 65536 bytes"},
  };
  for (const auto& c : cases) {
    TunerFile out;
    out.values["untouched"] = 1;
    Status s = parse_tuner_file(c.text, "tuner.txt", &out);
    EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT) << c.says;
    EXPECT_NE(s.message().find("tuner.txt"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.message();
    EXPECT_EQ(out.values.size(), 1u) << "a failed parse leaves its output alone";
  }
}

// A file cut anywhere (a full disk, a copy interrupted) parses to what its whole lines say
// or fails with a message; nothing in between is out of range.
TEST(TunerFile, TruncatedAnywhereItParsesOrFailsCleanly) {
  TunerFile file;
  file.net_transport = "ibverbs";
  file.values = {{"net_alpha_ns", 3000}, {"net_mbps", 12500}, {"reduce_mbps", 20000}};
  const std::string text = format_tuner_file(file, {"calibrated"});
  int failed = 0;
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    TunerFile out;
    Status s = parse_tuner_file(text.substr(0, cut), "f", &out);
    if (!s.ok()) {
      ++failed;
      EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT);
      continue;
    }
    for (const auto& [key, value] : out.values) {
      EXPECT_GE(value, 0) << key;
      EXPECT_LE(value, file.values.at(key)) << key << " after a cut at " << cut;
    }
  }
  EXPECT_GT(failed, 0);  // cuts inside a key or right after '=' are caught
}

// ---- where each parameter comes from ----

TEST(TunerSources, DefaultsWithoutFileOrTransports) {
  std::vector<CostSource> sources;
  const CostParams p = resolve_cost_params(nullptr, &sources);
  EXPECT_DOUBLE_EQ(p.alpha_s, 25000e-9);
  EXPECT_DOUBLE_EQ(p.local_alpha_s, p.alpha_s);  // unset: as the network's
  EXPECT_DOUBLE_EQ(p.link_bytes_per_s, 2000e6);
  EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 8000e6);
  for (const char* param : {"CIUIC_NET_ALPHA_NS", "CIUIC_NET_MBPS", "CIUIC_LOCAL_MBPS",
                            "CIUIC_REDUCE_MBPS", "CIUIC_NET_HOP_NS"})
    EXPECT_EQ(source_of(sources, param).source, "default") << param;
}

TEST(TunerSources, TransportsFigureWhereNothingElseDoes) {
  std::vector<CostSource> sources;
  // A 100 Gb/s network beside shared memory that reports 0.5 us and 80 Gb/s.
  const auto c = costs("ibverbs", 100000, "shm", 80000, 0.5);
  const CostParams p = resolve_cost_params(c.get(), &sources);
  EXPECT_DOUBLE_EQ(p.link_bytes_per_s, 12500e6);
  EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 10000e6);
  EXPECT_NEAR(p.local_alpha_s, 0.5e-6 + 20000e-9, 1e-12);  // latency + the executor's own cost
  EXPECT_DOUBLE_EQ(p.alpha_s, 25000e-9);                   // no latency reported: the default
  EXPECT_EQ(source_of(sources, "CIUIC_NET_MBPS").source, "transport ibverbs (speed 100000 Mb/s)");
  EXPECT_NE(source_of(sources, "CIUIC_LOCAL_ALPHA_NS").source.find("transport shm"),
            std::string::npos);
  EXPECT_EQ(source_of(sources, "CIUIC_NET_ALPHA_NS").source, "default");

  // Without a local transport, the ranks of a node talk over the network transport.
  const auto alone = costs("tcp", 10000);
  const CostParams q = resolve_cost_params(alone.get(), &sources);
  EXPECT_DOUBLE_EQ(q.local_bytes_per_s, q.link_bytes_per_s);
  EXPECT_DOUBLE_EQ(q.local_alpha_s, q.alpha_s);
  EXPECT_EQ(source_of(sources, "CIUIC_LOCAL_MBPS").source, "as the network (no local transport)");
}

TEST(TunerSources, TheEnvironmentBeatsTheFileWhichBeatsTheTransports) {
  TempFile f(
      "net_transport=tcp\nlocal_transport=shm\nnet_alpha_ns=90000\nnet_mbps=555\n"
      "local_mbps=4444\nreduce_mbps=333\n");
  ScopedConfig file("CIUIC_TUNER_FILE", f.path());
  const auto c = costs("tcp", 10000, "shm", 80000, 0.5);
  std::vector<CostSource> sources;
  CostParams p = resolve_cost_params(c.get(), &sources);
  EXPECT_DOUBLE_EQ(p.alpha_s, 90000e-9);
  EXPECT_DOUBLE_EQ(p.link_bytes_per_s, 555e6);  // over the transport's 10 Gb/s
  EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 4444e6);
  EXPECT_DOUBLE_EQ(p.gamma_s_per_byte, 1 / 333e6);
  EXPECT_EQ(source_of(sources, "CIUIC_NET_MBPS").source, "file " + f.path());
  {
    ScopedConfig alpha("CIUIC_NET_ALPHA_NS", "7000");
    ScopedConfig local("CIUIC_LOCAL_MBPS", "123");
    p = resolve_cost_params(c.get(), &sources);
    EXPECT_DOUBLE_EQ(p.alpha_s, 7000e-9);
    EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 123e6);
    EXPECT_DOUBLE_EQ(p.link_bytes_per_s, 555e6);  // the file still fills the rest
    EXPECT_EQ(source_of(sources, "CIUIC_NET_ALPHA_NS").source, "env");
    EXPECT_EQ(source_of(sources, "CIUIC_LOCAL_MBPS").source, "env");
  }
  // Measured on tcp, not on the ibverbs in use: the network's figures are not applied
  // (the file's shm and reduction figures are).
  const auto ib = costs("ibverbs", 100000, "shm", 80000, 0.5);
  p = resolve_cost_params(ib.get(), &sources);
  EXPECT_DOUBLE_EQ(p.link_bytes_per_s, 12500e6);
  EXPECT_DOUBLE_EQ(p.alpha_s, 25000e-9);
  EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 4444e6);
  EXPECT_DOUBLE_EQ(p.gamma_s_per_byte, 1 / 333e6);
  // A communicator with no local transport takes no shm figures either.
  const auto tcp_only = costs("tcp", 0);
  p = resolve_cost_params(tcp_only.get(), &sources);
  EXPECT_DOUBLE_EQ(p.local_bytes_per_s, 555e6);
}

TEST(TunerSources, AFileThatDoesNotLoadLeavesTheDefaults) {
  const CostParams defaults = resolve_cost_params(nullptr);
  for (const std::string& bad : {std::string("net_mbps=oops\n"), std::string("\x7f\x45\x4c\x46")}) {
    TempFile f(bad);
    ScopedConfig file("CIUIC_TUNER_FILE", f.path());
    std::vector<CostSource> sources;
    const CostParams p = resolve_cost_params(nullptr, &sources);
    EXPECT_DOUBLE_EQ(p.link_bytes_per_s, defaults.link_bytes_per_s);
    EXPECT_EQ(source_of(sources, "CIUIC_NET_MBPS").source, "default");
    EXPECT_FALSE(default_algorithm(allreduce(8, 1 << 20)) == nullptr);  // the tuner still decides
  }
  ScopedConfig missing("CIUIC_TUNER_FILE", ::testing::TempDir() + "no/such/tuner.txt");
  EXPECT_DOUBLE_EQ(resolve_cost_params(nullptr).alpha_s, defaults.alpha_s);
  TunerFile out;
  Status s = read_tuner_file(::testing::TempDir() + "no/such/tuner.txt", &out);
  EXPECT_EQ(s.code(), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("cannot open"), std::string::npos) << s.message();
}

// ---- decisions ----

// The largest power-of-two size at which the tuner picks recursive doubling (8 ranks).
size_t doubling_upto(const std::shared_ptr<const TransportCosts>& transports) {
  size_t upto = 0;
  for (size_t bytes = 1024; bytes <= (size_t{64} << 20); bytes *= 2) {
    CollectiveArgs a = allreduce(8, bytes);
    a.transports = transports;
    if (std::string(default_algorithm(a)) == "recursive_doubling") upto = bytes;
  }
  return upto;
}

TEST(TunerDecisions, ASlowerMessageMovesTheRecursiveDoublingCrossoverUp) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "flat");
  const auto tcp = costs("tcp", 0);
  const size_t base = doubling_upto(tcp);
  ASSERT_GT(base, 0u);
  TempFile f("net_transport=tcp\nnet_alpha_ns=250000\n");  // ten times the default
  ScopedConfig file("CIUIC_TUNER_FILE", f.path());
  const size_t slow = doubling_upto(tcp);
  EXPECT_GT(slow, base);
  // The same against the ring alone: the size where the ring's prediction drops below
  // recursive doubling's moves up too.
  auto ring_wins_from = [&](const CostParams& p) {
    Topology t;
    EXPECT_TRUE(Topology::parse("flat", 8, p, &t).ok());
    for (size_t bytes = 1024; bytes <= (size_t{1} << 30); bytes *= 2)
      if (predict_time(Collective::kAllreduce, "ring", bytes, t, 256 << 10) <
          predict_time(Collective::kAllreduce, "recursive_doubling", bytes, t, 256 << 10))
        return bytes;
    return size_t{0};
  };
  const size_t ring_slow = ring_wins_from(resolve_cost_params(tcp.get()));
  ScopedConfig fast("CIUIC_NET_ALPHA_NS", "25000");  // the environment wins: the default again
  const size_t ring_base = ring_wins_from(resolve_cost_params(tcp.get()));
  EXPECT_EQ(doubling_upto(tcp), base);
  ASSERT_GT(ring_base, 0u);
  EXPECT_GT(ring_slow, ring_base);
}

TEST(TunerDecisions, ASlowNetworkBesideFastSharedMemoryMakesHierarchicalWin) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "flat");
  std::vector<int> layout;
  for (int r = 0; r < 16; ++r) layout.push_back(r / 4);  // 4 nodes of 4
  const auto nodes = std::make_shared<const std::vector<int>>(layout);
  const auto c = costs("tcp", 0, "shm", 0);
  auto choice = [&](size_t bytes) {
    CollectiveArgs a = allreduce(16, bytes);
    a.node_of_rank = nodes;
    a.transports = c;
    return std::string(default_algorithm(a));
  };
  {
    TempFile f(
        "net_transport=tcp\nlocal_transport=shm\nnet_mbps=100\nlocal_mbps=50000\n"
        "local_alpha_ns=1000\n");
    ScopedConfig file("CIUIC_TUNER_FILE", f.path());
    EXPECT_EQ(choice(64 << 10), "hierarchical");
    EXPECT_EQ(choice(16 << 20), "hierarchical");
  }
  {
    // The other way round: the node's links are the slow ones.
    TempFile f(
        "net_transport=tcp\nlocal_transport=shm\nnet_mbps=50000\nlocal_mbps=100\n"
        "local_alpha_ns=1000\n");
    ScopedConfig file("CIUIC_TUNER_FILE", f.path());
    EXPECT_NE(choice(16 << 20), "hierarchical");
  }
}

// Two communicators of one shape whose transports differ get each its own decision, in
// any order: the decision cache's key holds the cost parameters.
TEST(TunerDecisions, CommunicatorsOfDifferentTransportsDoNotShareADecision) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "flat");
  CollectiveArgs slow = allreduce(8, 1 << 20), fast = slow;
  slow.transports = costs("tcp", 8);            // 1 MB/s: bytes dominate
  fast.transports = costs("ibverbs", 8000000);  // 1 TB/s: messages dominate
  const std::string on_slow = default_algorithm(slow);
  const std::string on_fast = default_algorithm(fast);
  EXPECT_NE(on_slow, on_fast);
  EXPECT_EQ(std::string(default_algorithm(slow)), on_slow);
  EXPECT_EQ(std::string(default_algorithm(fast)), on_fast);
}

// All ranks on one node, with a local transport: every message crosses the local links, so
// their figures decide, not the network's.
TEST(TunerDecisions, ACommunicatorOnOneNodeIsModelledOnItsLocalLinks) {
  ScopedConfig topo("CIUIC_TOPOLOGY", "flat");
  CollectiveArgs a = allreduce(8, 1 << 20);
  a.node_of_rank = std::make_shared<const std::vector<int>>(8, 0);
  a.transports = costs("tcp", 8, "shm", 8000000);  // the network crawls, shm flies
  CollectiveArgs fast = allreduce(8, 1 << 20);
  fast.transports = costs("ibverbs", 8000000);
  EXPECT_EQ(std::string(default_algorithm(a)), std::string(default_algorithm(fast)));
  // Without the local transport the node's ranks talk over the slow network.
  a.transports = costs("tcp", 8);
  CollectiveArgs slow = allreduce(8, 1 << 20);
  slow.transports = costs("tcp", 8);
  EXPECT_EQ(std::string(default_algorithm(a)), std::string(default_algorithm(slow)));
  EXPECT_NE(std::string(default_algorithm(a)), std::string(default_algorithm(fast)));
}

// ---- the model's local message cost ----

TEST(CostModelLocalAlpha, ChargedForMessagesInsideANodeOnly) {
  CostParams p;
  p.local_alpha_s = 1e-3;  // a millisecond inside a node, 20 us across
  Topology one_node, spread, flat;
  ASSERT_TRUE(Topology::parse("nodes:1", 8, p, &one_node).ok());
  ASSERT_TRUE(Topology::parse("nodes:8", 8, p, &spread).ok());
  ASSERT_TRUE(Topology::parse("flat", 8, p, &flat).ok());
  EXPECT_DOUBLE_EQ(one_node.alpha_s(0, 1), 1e-3);
  EXPECT_DOUBLE_EQ(spread.alpha_s(0, 1), p.alpha_s);
  EXPECT_DOUBLE_EQ(flat.alpha_s(0, 1), p.alpha_s);
  CostParams q = p;
  q.local_alpha_s = q.alpha_s;
  Topology one_node_q;
  ASSERT_TRUE(Topology::parse("nodes:1", 8, q, &one_node_q).ok());
  for (const char* algo : {"ring", "recursive_doubling"}) {
    const double with = predict_time(Collective::kAllreduce, algo, 4096, one_node, 256 << 10);
    const double without = predict_time(Collective::kAllreduce, algo, 4096, one_node_q, 256 << 10);
    // ring: 14 rounds, recursive doubling: 3, each a local message more expensive.
    const double rounds = std::string(algo) == "ring" ? 14 : 3;
    EXPECT_NEAR(with - without, rounds * (1e-3 - q.alpha_s), 1e-9) << algo;
  }
  // simulate_time charges it per message too: one 8-byte send inside a node.
  std::vector<Schedule> s(2);
  for (int r = 0; r < 2; ++r) {
    s[r].rank = r;
    s[r].nranks = 2;
  }
  s[0].add(send_step(1, at(Buffer::kSend, 0), 8));
  s[1].add(recv_step(0, at(Buffer::kRecv, 0), 8));
  for (auto& x : s) x.finalize();
  Topology two;
  ASSERT_TRUE(Topology::parse("nodes:1", 2, p, &two).ok());
  double seconds = 0;
  ASSERT_TRUE(simulate_time(s, two, &seconds).ok());
  EXPECT_NEAR(seconds, 1e-3 + p.hop_latency_s + 8 / p.local_bytes_per_s, 1e-9);
}

}  // namespace
}  // namespace ciuic::coll
