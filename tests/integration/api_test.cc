// The C API at its edges: every kind of bad input returns a code and a message that names
// the argument, never crashes, and leaves the communicator usable (a correct allreduce
// runs after each rejected call); destroyed and aborted communicators; abort from another
// thread; init errors; split. Non-blocking operations and requests: api_nonblocking_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/cluster.h"
#include "support/scoped_config.h"

namespace ciuic::testing {
namespace {

using std::chrono::steady_clock;

double seconds_since(steady_clock::time_point start) {
  return std::chrono::duration<double>(steady_clock::now() - start).count();
}

struct BadCall {
  const char* what;
  ciuic_result_t code;
  const char* mentions;  // the message must name the argument at fault
  std::function<ciuic_result_t(ciuic_comm_t)> call;
  bool no_comm = false;  // the error lands in the thread's slot (ciuic_comm_get_last_error(NULL))
};

float g_send[64];
float g_recv[64];
ciuic_stream_t const kSomeStream = reinterpret_cast<ciuic_stream_t>(0x1000);

std::vector<BadCall> bad_calls() {
  const size_t kHuge = static_cast<size_t>(-1);
  const auto kF = CIUIC_FLOAT32;
  const auto kBadType = static_cast<ciuic_datatype_t>(99);
  const auto kBadOp = static_cast<ciuic_op_t>(99);
  ciuic_comm_t made_up = reinterpret_cast<ciuic_comm_t>(g_send);
  return {
      {"NULL comm", CIUIC_ERR_INVALID_ARGUMENT, "communicator",
       [](ciuic_comm_t) { return ciuic_allreduce(g_send, g_recv, 4, CIUIC_FLOAT32, CIUIC_SUM, nullptr, nullptr); },
       true},
      {"made-up comm", CIUIC_ERR_INVALID_ARGUMENT, "not a live communicator",
       [made_up](ciuic_comm_t) { return ciuic_barrier(made_up, nullptr); }, true},
      {"NULL sendbuf", CIUIC_ERR_INVALID_ARGUMENT, "sendbuf",
       [=](ciuic_comm_t c) { return ciuic_allreduce(nullptr, g_recv, 4, kF, CIUIC_SUM, c, nullptr); }},
      {"NULL recvbuf", CIUIC_ERR_INVALID_ARGUMENT, "recvbuf",
       [=](ciuic_comm_t c) { return ciuic_allgather(g_send, nullptr, 4, kF, c, nullptr); }},
      {"NULL recv buffer of recv", CIUIC_ERR_INVALID_ARGUMENT, "recvbuf",
       [=](ciuic_comm_t c) { return ciuic_recv(nullptr, 4, kF, 1, c, nullptr); }},
      {"count (size_t)-1", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) { return ciuic_allreduce(g_send, g_recv, kHuge, kF, CIUIC_SUM, c, nullptr); }},
      {"count whose bytes overflow", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) { return ciuic_broadcast(g_send, g_recv, kHuge / 4 + 1, kF, 0, c, nullptr); }},
      {"count * nranks overflows (allgather)", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) { return ciuic_allgather(g_send, g_recv, kHuge / 8 + 1, kF, c, nullptr); }},
      {"count * nranks overflows (reduce_scatter)", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) {
         return ciuic_reduce_scatter(g_send, g_recv, kHuge / 8 + 1, kF, CIUIC_SUM, c, nullptr);
       }},
      {"count * nranks overflows (alltoall)", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) { return ciuic_alltoall(g_send, g_recv, kHuge / 2, CIUIC_UINT8, c, nullptr); }},
      {"negative count to send", CIUIC_ERR_INVALID_ARGUMENT, "count",
       [=](ciuic_comm_t c) { return ciuic_send(g_send, static_cast<size_t>(-5), kF, 1, c, nullptr); }},
      {"datatype 99", CIUIC_ERR_INVALID_ARGUMENT, "datatype",
       [=](ciuic_comm_t c) { return ciuic_allreduce(g_send, g_recv, 4, kBadType, CIUIC_SUM, c, nullptr); }},
      {"datatype -1", CIUIC_ERR_INVALID_ARGUMENT, "datatype",
       [=](ciuic_comm_t c) {
         return ciuic_broadcast(g_send, g_recv, 4, static_cast<ciuic_datatype_t>(-1), 0, c, nullptr);
       }},
      {"datatype CIUIC_NUM_DATATYPES", CIUIC_ERR_INVALID_ARGUMENT, "datatype",
       [=](ciuic_comm_t c) { return ciuic_send(g_send, 4, CIUIC_NUM_DATATYPES, 1, c, nullptr); }},
      {"op 99", CIUIC_ERR_INVALID_ARGUMENT, "op",
       [=](ciuic_comm_t c) { return ciuic_allreduce(g_send, g_recv, 4, kF, kBadOp, c, nullptr); }},
      {"op CIUIC_NUM_OPS", CIUIC_ERR_INVALID_ARGUMENT, "op",
       [=](ciuic_comm_t c) { return ciuic_reduce(g_send, g_recv, 4, kF, CIUIC_NUM_OPS, 0, c, nullptr); }},
      {"op -3 (reduce_scatter)", CIUIC_ERR_INVALID_ARGUMENT, "op",
       [=](ciuic_comm_t c) {
         return ciuic_reduce_scatter(g_send, g_recv, 4, kF, static_cast<ciuic_op_t>(-3), c, nullptr);
       }},
      {"root == nranks", CIUIC_ERR_INVALID_ARGUMENT, "root 2",
       [=](ciuic_comm_t c) { return ciuic_broadcast(g_send, g_recv, 4, kF, 2, c, nullptr); }},
      {"root -1", CIUIC_ERR_INVALID_ARGUMENT, "root -1",
       [=](ciuic_comm_t c) { return ciuic_reduce(g_send, g_recv, 4, kF, CIUIC_SUM, -1, c, nullptr); }},
      {"peer == nranks", CIUIC_ERR_INVALID_ARGUMENT, "peer 2",
       [=](ciuic_comm_t c) { return ciuic_send(g_send, 4, kF, 2, c, nullptr); }},
      {"peer -1", CIUIC_ERR_INVALID_ARGUMENT, "peer -1",
       [=](ciuic_comm_t c) { return ciuic_recv(g_recv, 4, kF, -1, c, nullptr); }},
      {"send to self", CIUIC_ERR_INVALID_ARGUMENT, "itself",
       [=](ciuic_comm_t c) { return ciuic_send(g_send, 4, kF, 0, c, nullptr); }},
      {"non-blocking send to self", CIUIC_ERR_INVALID_ARGUMENT, "itself",
       [=](ciuic_comm_t c) {
         ciuic_request_t req = reinterpret_cast<ciuic_request_t>(g_recv);
         ciuic_result_t r = ciuic_isend(g_send, 4, kF, 0, c, nullptr, &req);
         // A rejected call hands back no request to wait on.
         return req == nullptr ? r : CIUIC_ERR_INTERNAL;
       }},
      {"non-NULL stream", CIUIC_ERR_UNSUPPORTED, "stream",
       [=](ciuic_comm_t c) { return ciuic_allreduce(g_send, g_recv, 4, kF, CIUIC_SUM, c, kSomeStream); }},
      {"non-NULL stream (barrier)", CIUIC_ERR_UNSUPPORTED, "stream",
       [=](ciuic_comm_t c) { return ciuic_barrier(c, kSomeStream); }},
      {"NULL request", CIUIC_ERR_INVALID_ARGUMENT, "request",
       [=](ciuic_comm_t c) { return ciuic_iallreduce(g_send, g_recv, 4, kF, CIUIC_SUM, c, nullptr, nullptr); }},
      {"NULL rank output", CIUIC_ERR_INVALID_ARGUMENT, "rank",
       [=](ciuic_comm_t c) { return ciuic_comm_rank(c, nullptr); }},
      {"NULL size output", CIUIC_ERR_INVALID_ARGUMENT, "size",
       [=](ciuic_comm_t c) { return ciuic_comm_size(c, nullptr); }},
      {"NULL newcomm", CIUIC_ERR_INVALID_ARGUMENT, "newcomm",
       [=](ciuic_comm_t c) { return ciuic_comm_split(c, 0, 0, nullptr); }},
      {"wait on NULL", CIUIC_ERR_INVALID_ARGUMENT, "request",
       [](ciuic_comm_t) { return ciuic_wait(nullptr); }, true},
      {"wait on a NULL request", CIUIC_ERR_INVALID_ARGUMENT, "request",
       [](ciuic_comm_t) {
         ciuic_request_t none = nullptr;
         return ciuic_wait(&none);
       },
       true},
      {"test with NULL done", CIUIC_ERR_INVALID_ARGUMENT, "done",
       [](ciuic_comm_t) {
         ciuic_request_t none = nullptr;
         return ciuic_test(&none, nullptr);
       },
       true},
  };
}

TEST(ApiBadInput, ReturnsCodeAndMessageAndCommStaysUsable) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  expect_allreduce_works(cluster, "init");
  std::set<std::string> messages;
  for (const BadCall& bad : bad_calls()) {
    SCOPED_TRACE(bad.what);
    ciuic_comm_t comm = cluster.comm(0);
    ASSERT_EQ(bad.call(comm), bad.code);
    std::string message = ciuic_comm_get_last_error(bad.no_comm ? nullptr : comm);
    EXPECT_NE(message.find(bad.mentions), std::string::npos)
        << "message should mention '" << bad.mentions << "': " << message;
    messages.insert(message);
    expect_allreduce_works(cluster, bad.what);
  }
  // Each mistake gets its own words, not one generic text.
  EXPECT_GE(messages.size(), bad_calls().size() - 6);
}

TEST(ApiBadInput, ErrorIsRecordedOnTheCommunicatorItConcerns) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  EXPECT_STREQ(ciuic_comm_get_last_error(cluster.comm(1)), "");
  ASSERT_EQ(ciuic_broadcast(g_send, g_recv, 4, CIUIC_FLOAT32, 7, cluster.comm(0), nullptr),
            CIUIC_ERR_INVALID_ARGUMENT);
  std::string on_comm = ciuic_comm_get_last_error(cluster.comm(0));
  EXPECT_NE(on_comm.find("broadcast"), std::string::npos) << on_comm;
  EXPECT_NE(on_comm.find("root 7"), std::string::npos) << on_comm;
  EXPECT_STREQ(ciuic_comm_get_last_error(cluster.comm(1)), "") << "rank 1 did nothing wrong";
}

TEST(ApiLibrary, VersionResultStringsAndDatatypes) {
  EXPECT_EQ(ciuic_get_version(), CIUIC_VERSION);
  EXPECT_EQ(CIUIC_VERSION, CIUIC_VERSION_MAJOR * 10000 + CIUIC_VERSION_MINOR * 100 + CIUIC_VERSION_PATCH);
  std::set<std::string> texts;
  for (int code = CIUIC_SUCCESS; code <= CIUIC_IN_PROGRESS; ++code) {
    const char* text = ciuic_result_string(static_cast<ciuic_result_t>(code));
    ASSERT_NE(text, nullptr) << code;
    EXPECT_GT(std::strlen(text), 3u) << code;
    texts.insert(text);
  }
  EXPECT_EQ(texts.size(), static_cast<size_t>(CIUIC_IN_PROGRESS + 1)) << "every code has its own text";
  EXPECT_STREQ(ciuic_result_string(CIUIC_SUCCESS), "success");
  EXPECT_NE(std::string(ciuic_result_string(CIUIC_ERR_TIMEOUT)).find("timeout"), std::string::npos);
  const char* unknown = ciuic_result_string(static_cast<ciuic_result_t>(99));
  ASSERT_NE(unknown, nullptr);
  EXPECT_EQ(texts.count(unknown), 0u);

  const size_t sizes[CIUIC_NUM_DATATYPES] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1};
  for (int t = 0; t < CIUIC_NUM_DATATYPES; ++t) {
    EXPECT_EQ(ciuic_datatype_size(static_cast<ciuic_datatype_t>(t)), sizes[t]) << t;
    ASSERT_NE(ciuic_datatype_name(static_cast<ciuic_datatype_t>(t)), nullptr);
  }
  EXPECT_STREQ(ciuic_datatype_name(CIUIC_BFLOAT16), "bfloat16");
  EXPECT_STREQ(ciuic_datatype_name(CIUIC_FLOAT8_E4M3), "f8e4m3");
  EXPECT_STREQ(ciuic_datatype_name(CIUIC_FLOAT8_E5M2), "f8e5m2");
  EXPECT_EQ(ciuic_datatype_size(static_cast<ciuic_datatype_t>(99)), 0u);
  EXPECT_EQ(ciuic_datatype_size(static_cast<ciuic_datatype_t>(-1)), 0u);
  EXPECT_NE(ciuic_datatype_name(static_cast<ciuic_datatype_t>(99)), nullptr);
}

TEST(ApiInit, BadArgumentsGiveClearErrors) {
  ciuic_unique_id_t id;
  ASSERT_EQ(ciuic_get_unique_id(&id), CIUIC_SUCCESS) << ciuic_comm_get_last_error(nullptr);
  ASSERT_EQ(ciuic_get_unique_id(nullptr), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ciuic_comm_get_last_error(nullptr)).find("unique_id"), std::string::npos);

  struct Case {
    const char* what;
    int nranks, rank;
    bool garble_id;
    const char* mentions;
  };
  const Case cases[] = {
      {"rank == nranks", 2, 2, false, "rank 2"},
      {"negative rank", 4, -1, false, "rank -1"},
      {"nranks 0", 0, 0, false, "nranks"},
      {"negative nranks", -3, 0, false, "nranks"},
      {"garbled unique id", 2, 0, true, "unique id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ciuic_unique_id_t use = id;
    if (c.garble_id) std::memset(use.internal, 0xAB, sizeof(use.internal));
    ciuic_comm_t comm = reinterpret_cast<ciuic_comm_t>(g_send);
    auto start = steady_clock::now();
    EXPECT_EQ(ciuic_comm_init_rank(&comm, c.nranks, use, c.rank), CIUIC_ERR_INVALID_ARGUMENT);
    EXPECT_LT(seconds_since(start), 1.0) << "bad arguments are refused before any waiting";
    EXPECT_EQ(comm, nullptr) << "a failed init leaves no handle behind";
    std::string message = ciuic_comm_get_last_error(nullptr);
    EXPECT_NE(message.find(c.mentions), std::string::npos) << message;
  }
  ciuic_unique_id_t zeros;
  std::memset(&zeros, 0, sizeof(zeros));
  ciuic_comm_t comm = nullptr;
  EXPECT_EQ(ciuic_comm_init_rank(&comm, 1, zeros, 0), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ciuic_comm_get_last_error(nullptr)).find("ciuic_get_unique_id"), std::string::npos)
      << "says where a good id comes from: " << ciuic_comm_get_last_error(nullptr);
  EXPECT_EQ(ciuic_comm_init_rank(nullptr, 1, id, 0), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(ciuic_comm_get_last_error(nullptr)).find("comm"), std::string::npos);
}

TEST(ApiInit, PeerThatNeverJoinsTimesOut) {
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "1000");
  ciuic_unique_id_t id;
  ASSERT_EQ(ciuic_get_unique_id(&id), CIUIC_SUCCESS);
  ciuic_comm_t comm = nullptr;
  auto start = steady_clock::now();
  EXPECT_EQ(ciuic_comm_init_rank(&comm, 2, id, 0), CIUIC_ERR_TIMEOUT);
  const double took = seconds_since(start);
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(comm, nullptr);
  std::string message = ciuic_comm_get_last_error(nullptr);
  EXPECT_FALSE(message.empty());
  EXPECT_NE(message.find("rank 0"), std::string::npos) << message;
}

// A per-communicator deadline bounds an operation a peer never joins, whatever
// CIUIC_TIMEOUT_MS says (here ten minutes: without the override this test would hang
// until CTest kills it).
TEST(ApiTimeout, PerCommunicatorDeadlineOverridesTheDefault) {
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "600000");
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  int64_t ms = -1;
  ASSERT_EQ(ciuic_comm_get_timeout(cluster.comm(0), &ms), CIUIC_SUCCESS);
  EXPECT_EQ(ms, 600000);
  ASSERT_EQ(ciuic_comm_set_timeout(cluster.comm(0), 300), CIUIC_SUCCESS);
  ASSERT_EQ(ciuic_comm_get_timeout(cluster.comm(0), &ms), CIUIC_SUCCESS);
  EXPECT_EQ(ms, 300);
  ASSERT_EQ(ciuic_comm_get_timeout(cluster.comm(1), &ms), CIUIC_SUCCESS);
  EXPECT_EQ(ms, 600000) << "the other communicator keeps the default";
  // Rank 1 never calls: rank 0's allreduce must fail by its own deadline.
  std::vector<float> send(64, 1.0f), recv(64);
  EXPECT_EQ(ciuic_allreduce(send.data(), recv.data(), 64, CIUIC_FLOAT32, CIUIC_SUM, cluster.comm(0), nullptr),
            CIUIC_ERR_TIMEOUT);
  const std::string message = ciuic_comm_get_last_error(cluster.comm(0));
  EXPECT_NE(message.find("rank 1"), std::string::npos) << message;
}

TEST(ApiTimeout, BadValuesAreRejectedZeroRestoresAndSplitsInherit) {
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "45000");
  Cluster cluster(3);
  ASSERT_TRUE(cluster.ok());
  for (int r = 0; r < 3; ++r) {
    ciuic_comm_t comm = cluster.comm(r);
    ASSERT_EQ(ciuic_comm_set_timeout(comm, 1234), CIUIC_SUCCESS);
    EXPECT_EQ(ciuic_comm_set_timeout(comm, -5), CIUIC_ERR_INVALID_ARGUMENT);
    const std::string message = ciuic_comm_get_last_error(comm);
    EXPECT_NE(message.find("-5 ms is negative"), std::string::npos) << message;
    int64_t ms = 0;
    EXPECT_EQ(ciuic_comm_get_timeout(comm, nullptr), CIUIC_ERR_INVALID_ARGUMENT);
    ASSERT_EQ(ciuic_comm_get_timeout(comm, &ms), CIUIC_SUCCESS);
    EXPECT_EQ(ms, 1234) << "a rejected value changes nothing";
  }
  EXPECT_EQ(ciuic_comm_set_timeout(nullptr, 10), CIUIC_ERR_INVALID_ARGUMENT);
  cluster.run([&](int rank, ciuic_comm_t comm) {
    ciuic_comm_t sub = nullptr;
    ASSERT_EQ(ciuic_comm_split(comm, rank % 2, rank, &sub), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    int64_t ms = 0;
    ASSERT_EQ(ciuic_comm_get_timeout(sub, &ms), CIUIC_SUCCESS);
    EXPECT_EQ(ms, 1234) << "rank " << rank << ": the split inherits its parent's deadline";
    ASSERT_EQ(ciuic_comm_set_timeout(sub, 0), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_comm_get_timeout(sub, &ms), CIUIC_SUCCESS);
    EXPECT_EQ(ms, 45000) << "rank " << rank << ": 0 restores CIUIC_TIMEOUT_MS";
    EXPECT_EQ(ciuic_comm_destroy(sub), CIUIC_SUCCESS);
  });
  expect_allreduce_works(cluster, "setting deadlines");
}

TEST(ApiLifecycle, DestroyedCommunicatorIsAnErrorNotACrash) {
  ciuic_unique_id_t id;
  ASSERT_EQ(ciuic_get_unique_id(&id), CIUIC_SUCCESS);
  ciuic_comm_t comm = nullptr;
  ASSERT_EQ(ciuic_comm_init_rank(&comm, 1, id, 0), CIUIC_SUCCESS) << ciuic_comm_get_last_error(nullptr);
  int size = 0, rank = -1;
  ASSERT_EQ(ciuic_comm_size(comm, &size), CIUIC_SUCCESS);
  ASSERT_EQ(ciuic_comm_rank(comm, &rank), CIUIC_SUCCESS);
  EXPECT_EQ(size, 1);
  EXPECT_EQ(rank, 0);
  float in[3] = {1, 2, 3}, out[3] = {};
  ASSERT_EQ(ciuic_allreduce(in, out, 3, CIUIC_FLOAT32, CIUIC_SUM, comm, nullptr), CIUIC_SUCCESS);
  EXPECT_EQ(out[2], 3.0f);
  ASSERT_EQ(ciuic_comm_destroy(comm), CIUIC_SUCCESS);

  // No communicator may be created between here and the end: its handle could reuse the address.
  const std::vector<std::pair<const char*, std::function<ciuic_result_t()>>> calls = {
      {"allreduce", [&] { return ciuic_allreduce(in, out, 3, CIUIC_FLOAT32, CIUIC_SUM, comm, nullptr); }},
      {"barrier", [&] { return ciuic_barrier(comm, nullptr); }},
      {"iallreduce", [&] {
         ciuic_request_t req = nullptr;
         return ciuic_iallreduce(in, out, 3, CIUIC_FLOAT32, CIUIC_SUM, comm, nullptr, &req);
       }},
      {"comm_rank", [&] { return ciuic_comm_rank(comm, &rank); }},
      {"comm_size", [&] { return ciuic_comm_size(comm, &size); }},
      {"comm_split", [&] {
         ciuic_comm_t child = nullptr;
         return ciuic_comm_split(comm, 0, 0, &child);
       }},
      {"comm_abort", [&] { return ciuic_comm_abort(comm); }},
      {"comm_destroy again", [&] { return ciuic_comm_destroy(comm); }},
  };
  for (const auto& [what, call] : calls) {
    EXPECT_EQ(call(), CIUIC_ERR_INVALID_ARGUMENT) << what;
    std::string message = ciuic_comm_get_last_error(comm);  // the thread's slot: comm is gone
    EXPECT_NE(message.find("not a live communicator"), std::string::npos) << what << ": " << message;
  }
  EXPECT_EQ(ciuic_comm_destroy(nullptr), CIUIC_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(ciuic_comm_abort(nullptr), CIUIC_ERR_INVALID_ARGUMENT);
}

TEST(ApiLifecycle, CallsAfterAbortFailWithAborted) {
  Cluster cluster(2);
  ASSERT_TRUE(cluster.ok());
  expect_allreduce_works(cluster, "init");  // connects the pair, so the abort reaches rank 1
  ASSERT_EQ(ciuic_comm_abort(cluster.comm(0)), CIUIC_SUCCESS);
  EXPECT_EQ(ciuic_comm_abort(cluster.comm(0)), CIUIC_SUCCESS) << "aborting twice is harmless";

  float in[4] = {1, 2, 3, 4}, out[4] = {};
  ciuic_comm_t aborted = cluster.comm(0);
  EXPECT_EQ(ciuic_allreduce(in, out, 4, CIUIC_FLOAT32, CIUIC_SUM, aborted, nullptr), CIUIC_ERR_ABORTED);
  EXPECT_NE(std::string(ciuic_comm_get_last_error(aborted)).find("abort"), std::string::npos)
      << ciuic_comm_get_last_error(aborted);
  EXPECT_EQ(ciuic_barrier(aborted, nullptr), CIUIC_ERR_ABORTED);
  ciuic_request_t req = nullptr;
  ciuic_result_t issued = ciuic_ibroadcast(in, out, 4, CIUIC_FLOAT32, 0, aborted, nullptr, &req);
  if (issued == CIUIC_SUCCESS) {
    EXPECT_EQ(ciuic_wait(&req), CIUIC_ERR_ABORTED);
  } else {
    EXPECT_EQ(issued, CIUIC_ERR_ABORTED);
  }
  EXPECT_EQ(req, nullptr);
  ciuic_comm_t child = reinterpret_cast<ciuic_comm_t>(g_send);
  EXPECT_EQ(ciuic_comm_split(aborted, 0, 0, &child), CIUIC_ERR_ABORTED);
  EXPECT_EQ(child, nullptr);

  // The peer learns of it promptly (it was told), and its message names who aborted.
  auto start = steady_clock::now();
  ciuic_result_t peer = ciuic_allreduce(in, out, 4, CIUIC_FLOAT32, CIUIC_SUM, cluster.comm(1), nullptr);
  EXPECT_TRUE(peer == CIUIC_ERR_REMOTE || peer == CIUIC_ERR_ABORTED) << ciuic_result_string(peer);
  EXPECT_LT(seconds_since(start), 2.0);
  std::string message = ciuic_comm_get_last_error(cluster.comm(1));
  EXPECT_NE(message.find("rank 0"), std::string::npos) << message;
}

// Ranks 0 and 1 of 3 block in an allreduce that rank 2 never joins; `abort_ranks` are
// aborted from another thread after 300 ms. Every blocked rank must return within ~1 s.
// With `connected`, a first allreduce has connected the ring, so an aborted rank can tell
// the peers it was exchanging data with.
void abort_while_blocked(const std::vector<int>& abort_ranks, bool connected) {
  ScopedConfig timeout("CIUIC_TIMEOUT_MS", "60000");  // so only the abort can end the wait
  Cluster cluster(3);
  ASSERT_TRUE(cluster.ok());
  if (connected) expect_allreduce_works(cluster, "init");
  constexpr size_t kCount = 1 << 18;
  std::atomic<int> blocked{0};
  std::thread aborter([&] {
    while (blocked.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (int r : abort_ranks) EXPECT_EQ(ciuic_comm_abort(cluster.comm(r)), CIUIC_SUCCESS);
  });
  auto start = steady_clock::now();
  cluster.run([&](int rank, ciuic_comm_t comm) {
    if (rank == 2) return;  // never joins
    std::vector<float> in(kCount, 1.0f), out(kCount);
    blocked.fetch_add(1);
    ciuic_result_t r = ciuic_allreduce(in.data(), out.data(), kCount, CIUIC_FLOAT32, CIUIC_SUM, comm, nullptr);
    const double took = seconds_since(start);
    EXPECT_TRUE(r == CIUIC_ERR_ABORTED || r == CIUIC_ERR_REMOTE)
        << "rank " << rank << ": " << ciuic_result_string(r) << ": " << ciuic_comm_get_last_error(comm);
    EXPECT_LT(took, 0.3 + 1.0) << "rank " << rank << " returned " << took << " s after the start";
    EXPECT_GE(took, 0.25) << "rank " << rank << " returned before the abort";
    EXPECT_FALSE(std::string(ciuic_comm_get_last_error(comm)).empty());
  });
  aborter.join();
}

TEST(ApiLifecycle, AbortFromAnotherThreadReleasesBlockedRanks) {
  abort_while_blocked({0, 1}, /*connected=*/false);  // blocked while connecting to rank 2
  abort_while_blocked({0, 1}, /*connected=*/true);   // blocked in the data exchange
}

// Rank 1 is blocked receiving from rank 0 (ring), which is aborted: rank 0 tells it.
TEST(ApiLifecycle, AbortOfOneRankReleasesItsConnectedPeer) { abort_while_blocked({0}, true); }

// The old ranks of a communicator's members, in its rank order (an allgather).
std::vector<int32_t> members_of(ciuic_comm_t comm, int old_rank) {
  int size = 0;
  EXPECT_EQ(ciuic_comm_size(comm, &size), CIUIC_SUCCESS);
  std::vector<int32_t> all(static_cast<size_t>(size), -1);
  int32_t mine = old_rank;
  EXPECT_EQ(ciuic_allgather(&mine, all.data(), 1, CIUIC_INT32, comm, nullptr), CIUIC_SUCCESS)
      << ciuic_comm_get_last_error(comm);
  return all;
}

// A float64 allreduce whose exact result depends on which old ranks are members.
void expect_sum_of_members(ciuic_comm_t comm, int old_rank, const std::vector<int32_t>& members) {
  std::vector<double> in(1000), out(1000, -1);
  for (size_t i = 0; i < in.size(); ++i) in[i] = old_rank * 1000.0 + static_cast<double>(i);
  ASSERT_EQ(ciuic_allreduce(in.data(), out.data(), in.size(), CIUIC_FLOAT64, CIUIC_SUM, comm, nullptr),
            CIUIC_SUCCESS)
      << ciuic_comm_get_last_error(comm);
  for (size_t i = 0; i < in.size(); i += 97) {
    double want = 0;
    for (int32_t m : members) want += m * 1000.0 + static_cast<double>(i);
    ASSERT_EQ(out[i], want) << "element " << i;
  }
}

TEST(ApiSplit, GroupsOfDifferentSizesOrderedByKeyAndSplitAgain) {
  Cluster cluster(6);
  ASSERT_TRUE(cluster.ok());
  // Rank 0 opts out; ranks 1-3 form color 7 in reverse order (key = -rank); ranks 4-5
  // form color 3 with equal keys (ties keep the old order).
  const std::vector<int32_t> kColor7 = {3, 2, 1}, kColor3 = {4, 5};
  cluster.run([&](int rank, ciuic_comm_t comm) {
    const int color = rank == 0 ? CIUIC_SPLIT_NOCOLOR : rank <= 3 ? 7 : 3;
    const int key = color == 7 ? -rank : 0;
    ciuic_comm_t sub = reinterpret_cast<ciuic_comm_t>(g_send);
    ASSERT_EQ(ciuic_comm_split(comm, color, key, &sub), CIUIC_SUCCESS) << ciuic_comm_get_last_error(comm);
    if (color == CIUIC_SPLIT_NOCOLOR) {
      EXPECT_EQ(sub, nullptr);
      return;
    }
    ASSERT_NE(sub, nullptr);
    const std::vector<int32_t>& want = color == 7 ? kColor7 : kColor3;
    int sub_rank = -1, sub_size = -1;
    ASSERT_EQ(ciuic_comm_rank(sub, &sub_rank), CIUIC_SUCCESS);
    ASSERT_EQ(ciuic_comm_size(sub, &sub_size), CIUIC_SUCCESS);
    EXPECT_EQ(sub_size, static_cast<int>(want.size())) << "rank " << rank;
    EXPECT_EQ(want[static_cast<size_t>(sub_rank)], rank) << "rank " << rank << " got sub rank " << sub_rank;
    EXPECT_EQ(members_of(sub, rank), want) << "rank " << rank;
    expect_sum_of_members(sub, rank, want);

    if (color == 7) {
      // Split of a split: sub ranks {0, 2} (old 3, 1) and {1} (old 2), keys by old rank.
      ciuic_comm_t subsub = nullptr;
      ASSERT_EQ(ciuic_comm_split(sub, sub_rank % 2, rank, &subsub), CIUIC_SUCCESS)
          << ciuic_comm_get_last_error(sub);
      ASSERT_NE(subsub, nullptr);
      const std::vector<int32_t> want2 = sub_rank % 2 == 0 ? std::vector<int32_t>{1, 3} : std::vector<int32_t>{2};
      EXPECT_EQ(members_of(subsub, rank), want2) << "rank " << rank;
      expect_sum_of_members(subsub, rank, want2);
      EXPECT_EQ(ciuic_comm_destroy(subsub), CIUIC_SUCCESS);
      expect_sum_of_members(sub, rank, want);  // the parent still works
    }
    EXPECT_EQ(ciuic_comm_destroy(sub), CIUIC_SUCCESS);
  });
  expect_allreduce_works(cluster, "splits");
}

}  // namespace
}  // namespace ciuic::testing
