// simulate_dataflow on hand-built schedules: what it runs (per-peer order, dependencies,
// any run order) and what it refuses — deadlocks, size mismatches, unreceived messages,
// bad peers, bad dependencies, missing buffers, scratch overruns — each with an error
// naming the rank, step and peer. And check_hazards on hand-built races.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "coll/builder.h"
#include "coll/simulate.h"

namespace ciuic::coll {
namespace {

Schedule schedule_for(int rank, int nranks, size_t scratch_bytes = 0) {
  Schedule s;
  s.algorithm = "hand-built";
  s.rank = rank;
  s.nranks = nranks;
  s.datatype = CIUIC_INT32;
  s.op = CIUIC_SUM;
  s.scratch_bytes = scratch_bytes;
  return s;
}

// Every rank gets 64-byte send, receive and scratch buffers; send holds rank*100 + i.
struct World {
  explicit World(int n) : send(n, std::vector<int32_t>(16)), recv(n, std::vector<int32_t>(16, -1)),
                          scratch(n, std::vector<int32_t>(16, -1)) {
    for (int r = 0; r < n; ++r) {
      for (int i = 0; i < 16; ++i) send[r][i] = r * 100 + i;
      buffers.push_back(Buffers{send[r].data(), recv[r].data(), scratch[r].data()});
    }
  }
  std::vector<std::vector<int32_t>> send, recv, scratch;
  std::vector<Buffers> buffers;
};

// The error's message, or "" when it succeeded.
std::string error_of(const Status& s) { return s.ok() ? "" : s.message(); }

void expect_mentions(const std::string& message, std::initializer_list<const char*> parts) {
  EXPECT_FALSE(message.empty());
  for (const char* part : parts) EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' missing from: " << message;
}

TEST(Simulate, MessagesMatchInPerPeerOrderWhateverTheRunOrder) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    World w(2);
    std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
    // Rank 0 copies, then sends its first 4 elements, then elements 4..7.
    uint32_t copied = s[0].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 16));
    s[0].add(send_step(1, at(Buffer::kRecv, 0), 16), {copied});
    s[0].add(send_step(1, at(Buffer::kSend, 16), 16));
    // Rank 1 receives into recv+16 then recv+0: the first message lands at +16 however
    // the steps are picked, and a reduce adds both once they are in.
    uint32_t a = s[1].add(recv_step(0, at(Buffer::kRecv, 16), 16));
    uint32_t b = s[1].add(recv_step(0, at(Buffer::kRecv, 0), 16));
    s[1].add(reduce_step(at(Buffer::kRecv, 32), at(Buffer::kRecv, 0), at(Buffer::kRecv, 16), 16), {a, b});
    ASSERT_EQ(error_of(simulate_dataflow(s, w.buffers, SimulateOptions{seed})), "") << "seed " << seed;
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(w.recv[1][4 + i], i) << "seed " << seed;
      EXPECT_EQ(w.recv[1][i], 4 + i) << "seed " << seed;
      EXPECT_EQ(w.recv[1][8 + i], 4 + 2 * i) << "seed " << seed;
    }
  }
}

TEST(Simulate, SendsDoNotWaitForTheirReceiver) {
  // Both ranks send first, then receive: fine with buffered sends, as the executor posts them.
  World w(2);
  std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
  for (int r = 0; r < 2; ++r) {
    s[r].add(send_step(1 - r, at(Buffer::kSend, 0), 64));
    s[r].add(recv_step(1 - r, at(Buffer::kRecv, 0), 64));
  }
  ASSERT_EQ(error_of(simulate_dataflow(s, w.buffers)), "");
  EXPECT_EQ(w.recv[0][5], 105);
  EXPECT_EQ(w.recv[1][5], 5);
}

TEST(Simulate, ReportsADeadlockNamingRankStepAndPeer) {
  World w(3);
  std::vector<Schedule> s = {schedule_for(0, 3), schedule_for(1, 3), schedule_for(2, 3)};
  // Ranks 0 and 1 each wait for the other before sending; rank 2 is uninvolved.
  for (int r = 0; r < 2; ++r) {
    uint32_t got = s[r].add(recv_step(1 - r, at(Buffer::kRecv, 0), 8));
    s[r].add(send_step(1 - r, at(Buffer::kSend, 0), 8), {got});
  }
  const std::string e = error_of(simulate_dataflow(s, w.buffers));
  expect_mentions(e, {"deadlock", "2 of 3 ranks", "rank 0 step 0", "from rank 1",
                      "rank 1 is itself waiting at rank 1 step 0"});
}

TEST(Simulate, ReportsAReceiveThatNoSendMatches) {
  World w(2);
  std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
  s[0].add(send_step(1, at(Buffer::kSend, 0), 8));
  s[1].add(recv_step(0, at(Buffer::kRecv, 0), 8));
  s[1].add(recv_step(0, at(Buffer::kRecv, 8), 8));  // one more than rank 0 sends
  const std::string e = error_of(simulate_dataflow(s, w.buffers));
  expect_mentions(e, {"deadlock", "rank 1 step 1", "message #2 from rank 0",
                      "rank 0 finished all its steps, having sent only 1 message(s)"});
}

TEST(Simulate, ReportsASizeMismatchWithBothSteps) {
  World w(2);
  std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
  s[0].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 4));
  s[0].add(send_step(1, at(Buffer::kSend, 0), 12));
  s[1].add(recv_step(0, at(Buffer::kRecv, 0), 8));
  const std::string e = error_of(simulate_dataflow(s, w.buffers));
  expect_mentions(e, {"size mismatch", "rank 1 step 0", "expects 8 B", "from rank 0", "rank 0 step 1",
                      "sent 12 B"});
}

TEST(Simulate, ReportsMessagesNeverReceived) {
  World w(2);
  std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
  s[0].add(send_step(1, at(Buffer::kSend, 0), 8));
  s[0].add(send_step(1, at(Buffer::kSend, 8), 8));
  s[0].add(send_step(1, at(Buffer::kSend, 16), 8));
  s[1].add(recv_step(0, at(Buffer::kRecv, 0), 8));
  const std::string e = error_of(simulate_dataflow(s, w.buffers));
  expect_mentions(e, {"2 message(s) from rank 0 to rank 1 were never received", "rank 0 step 1",
                      "receives only 1"});
}

TEST(Simulate, ReportsASendToARankThatNeverListens) {
  World w(3);
  std::vector<Schedule> s = {schedule_for(0, 3), schedule_for(1, 3), schedule_for(2, 3)};
  s[0].add(send_step(2, at(Buffer::kSend, 0), 8));
  const std::string e = error_of(simulate_dataflow(s, w.buffers));
  expect_mentions(e, {"rank 0 step 0", "rank 2 never receives from rank 0"});
}

TEST(Simulate, RefusesBadPeers) {
  for (int peer : {-1, 1, 2, 7}) {  // 1 is the rank itself
    World w(2);
    std::vector<Schedule> s = {schedule_for(0, 2), schedule_for(1, 2)};
    s[1].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 4));
    s[1].add(recv_step(peer, at(Buffer::kRecv, 0), 4));
    const std::string e = error_of(simulate_dataflow(s, w.buffers));
    expect_mentions(e, {"rank 1 step 1", ("names peer " + std::to_string(peer)).c_str(), "not another rank"});
  }
}

TEST(Simulate, RefusesDependenciesOnLaterSteps) {
  World w(1);
  std::vector<Schedule> s = {schedule_for(0, 1)};
  s[0].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 4), {1});
  s[0].add(copy_step(at(Buffer::kRecv, 4), at(Buffer::kSend, 4), 4));
  expect_mentions(error_of(simulate_dataflow(s, w.buffers)), {"rank 0 step 0", "depends on step 1", "not an earlier"});
  std::vector<Schedule> self = {schedule_for(0, 1)};
  self[0].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 4), {0});
  expect_mentions(error_of(simulate_dataflow(self, w.buffers)), {"depends on step 0"});
}

TEST(Simulate, RefusesMissingBuffersAndScratchOverruns) {
  World w(1);
  std::vector<Schedule> s = {schedule_for(0, 1, 16)};
  s[0].add(copy_step(at(Buffer::kScratch, 8), at(Buffer::kSend, 0), 12));
  expect_mentions(error_of(simulate_dataflow(s, w.buffers)),
                  {"rank 0 step 0", "scratch bytes [8, 20)", "scratch_bytes 16"});
  std::vector<Buffers> in_place = w.buffers;
  in_place[0].send = nullptr;
  std::vector<Schedule> reads_send = {schedule_for(0, 1)};
  reads_send[0].add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), 4));
  expect_mentions(error_of(simulate_dataflow(reads_send, in_place)), {"rank 0 step 0", "send buffer", "did not provide"});
}

TEST(Simulate, RefusesSchedulesOfAnotherRankOrCount) {
  World w(2);
  std::vector<Schedule> swapped = {schedule_for(1, 2), schedule_for(0, 2)};
  expect_mentions(error_of(simulate_dataflow(swapped, w.buffers)), {"built for rank 1 of 2", "simulated as rank 0"});
  std::vector<Schedule> one = {schedule_for(0, 2)};
  expect_mentions(error_of(simulate_dataflow(one, w.buffers)), {"1 schedules but 2 buffer sets"});
}

// Rank n-1 starts a token that travels down to rank 0, round after round: every hop goes
// against rank order, the order a sweep over ranks visits them.
TEST(Simulate, ALongChainAgainstRankOrder) {
  const int n = 64, rounds = 40;
  std::vector<Schedule> s;
  std::vector<std::vector<int32_t>> value(n, std::vector<int32_t>(1, 0));
  std::vector<Buffers> buffers;
  for (int r = 0; r < n; ++r) {
    s.push_back(schedule_for(r, n));
    buffers.push_back(Buffers{nullptr, value[r].data(), nullptr});
  }
  value[n - 1][0] = 1;
  for (int round = 0; round < rounds; ++round) {
    for (int r = n - 1; r >= 0; --r) {
      const int down = (r + n - 1) % n, up = (r + 1) % n;
      const bool starts = r == n - 1 && round == 0;
      const uint32_t last = static_cast<uint32_t>(s[r].steps.size()) - 1;
      if (!starts) {
        std::vector<uint32_t> after;
        if (!s[r].steps.empty()) after.push_back(last);
        s[r].add(recv_step(up, at(Buffer::kRecv, 0), 4), after);
      }
      const uint32_t got = static_cast<uint32_t>(s[r].steps.size()) - 1;
      std::vector<uint32_t> after;
      if (!s[r].steps.empty()) after.push_back(got);
      s[r].add(send_step(down, at(Buffer::kRecv, 0), 4), after);
    }
  }
  s[n - 1].add(recv_step(0, at(Buffer::kRecv, 0), 4), {static_cast<uint32_t>(s[n - 1].steps.size()) - 1});
  ASSERT_EQ(error_of(simulate_dataflow(s, buffers)), "");
  for (int r = 0; r < n; ++r) EXPECT_EQ(value[r][0], 1);
}

// ---- check_hazards ----

TEST(Hazards, UnorderedWriteAndReadOfTheSameBytesIsARace) {
  Schedule s = schedule_for(0, 2);
  s.add(send_step(1, at(Buffer::kRecv, 8), 8));
  s.add(recv_step(1, at(Buffer::kRecv, 12), 8));  // overlaps bytes [12, 16)
  expect_mentions(error_of(check_hazards(s)), {"data race", "rank 0 step 0 (send", "rank 0 step 1 (recv",
                                               "recv buffer (set 0) bytes [12, 16)"});
}

TEST(Hazards, OrderingThroughAChainOfDependenciesIsEnough) {
  Schedule s = schedule_for(0, 2, 8);
  uint32_t sent = s.add(send_step(1, at(Buffer::kRecv, 0), 8));
  uint32_t other = s.add(recv_step(1, at(Buffer::kScratch, 0), 8), {sent});
  s.add(recv_step(1, at(Buffer::kRecv, 0), 8), {other});  // after the send, through step 1
  EXPECT_EQ(error_of(check_hazards(s)), "");
}

TEST(Hazards, ReadsMayOverlapAndDisjointWritesNeedNoOrder) {
  Schedule s = schedule_for(0, 3);
  s.add(send_step(1, at(Buffer::kSend, 0), 16));
  s.add(send_step(2, at(Buffer::kSend, 8), 16));
  s.add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 4), 8));
  s.add(recv_step(1, at(Buffer::kRecv, 8), 8));
  EXPECT_EQ(error_of(check_hazards(s)), "");
}

TEST(Hazards, TwoUnorderedWritesAreARaceEvenAfterAnOrderedRead) {
  Schedule s = schedule_for(0, 2);
  uint32_t w1 = s.add(recv_step(1, at(Buffer::kRecv, 0), 8));
  s.add(send_step(1, at(Buffer::kRecv, 0), 8), {w1});
  s.add(average_step(at(Buffer::kRecv, 4), 4));  // after neither
  expect_mentions(error_of(check_hazards(s)), {"rank 0 step 0", "rank 0 step 2 (average", "[4, 8)"});
}

TEST(Hazards, AliasedBuffersAreOneMemory) {
  // recvbuf == sendbuf + 16: a send of send+16 and a receive into recv+0 touch the same bytes.
  Schedule s = schedule_for(0, 2);
  s.add(send_step(1, at(Buffer::kSend, 16), 8));
  s.add(recv_step(1, at(Buffer::kRecv, 0), 8));
  EXPECT_EQ(error_of(check_hazards(s)), "");
  expect_mentions(error_of(check_hazards(s, BufferAliasing{true, 16})), {"data race", "send buffer", "[16, 24)"});
  EXPECT_EQ(error_of(check_hazards(s, BufferAliasing{true, 24})), "");
}

TEST(Hazards, ScratchIsSharedByEveryBufferSet) {
  Schedule s = schedule_for(0, 2, 8);
  Step a = recv_step(1, at(Buffer::kScratch, 0), 8);
  Step b = copy_step(at(Buffer::kRecv, 0), at(Buffer::kScratch, 0), 8);
  b.dst.set = 1;
  b.src.set = 1;
  s.add(a);
  s.add(b);
  expect_mentions(error_of(check_hazards(s)), {"data race", "scratch bytes [0, 8)"});
}

}  // namespace
}  // namespace ciuic::coll
