// The executor over real channels, two ranks as two threads of this process (shm): its
// per-thread state is reused from one run to the next, so runs of different shapes on the
// same threads — a pipelined schedule of hundreds of steps with the window wide open, then
// an 8-byte one, then the large one again — must each start clean and give exact results.
#include "coll/executor.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coll/algorithms.h"
#include "unit/transport_test_helpers.h"

namespace ciuic::coll {
namespace {

using transport::transport_test::ChannelPair;
using transport::transport_test::connect_pair;

class TwoRankLinks final : public PeerLinks {
 public:
  TwoRankLinks(transport::SendChannel* send, transport::RecvChannel* recv)
      : send_(send), recv_(recv) {}
  transport::SendChannel* send_channel(int) override { return send_; }
  transport::RecvChannel* recv_channel(int) override { return recv_; }
  std::string describe_peer(int peer) override { return "rank " + std::to_string(peer); }

 private:
  transport::SendChannel* send_;
  transport::RecvChannel* recv_;
};

CollectiveArgs allreduce_args(int rank, size_t count, size_t chunk_bytes) {
  CollectiveArgs a;
  a.collective = Collective::kAllreduce;
  a.rank = rank;
  a.nranks = 2;
  a.count = count;
  a.datatype = CIUIC_FLOAT32;
  a.op = CIUIC_SUM;
  a.chunk_bytes = chunk_bytes;
  return a;
}

// Runs one all-reduce of `count` floats on this rank; input element i of rank r is
// (r + 1) * (i % 7 + 1), so every output element must be 3 * (i % 7 + 1), exactly.
Status run_allreduce(int rank, size_t count, size_t chunk_bytes, int max_in_flight,
                     PeerLinks& links, std::string* wrong) {
  Schedule schedule;
  CIUIC_RETURN_IF_ERROR(
      build_schedule(allreduce_args(rank, count, chunk_bytes), "ring", &schedule));
  std::vector<float> in(count), out(count, -1.0f);
  for (size_t i = 0; i < count; ++i) in[i] = static_cast<float>((rank + 1) * (i % 7 + 1));
  std::vector<char> scratch(schedule.scratch_bytes);
  const std::vector<Buffers> buffers{Buffers{in.data(), out.data(), scratch.data()}};
  ExecOptions options;
  options.deadline = Deadline::after_ms(20000);
  options.max_in_flight = max_in_flight;
  options.yield_when_idle = true;
  CIUIC_RETURN_IF_ERROR(execute(schedule, buffers, links, options));
  for (size_t i = 0; i < count; ++i) {
    if (out[i] != static_cast<float>(3 * (i % 7 + 1))) {
      *wrong = "rank " + std::to_string(rank) + " element " + std::to_string(i) + " of " +
               std::to_string(count) + " is " + std::to_string(out[i]);
      break;
    }
  }
  return Status::Ok();
}

TEST(Executor, RunsOfDifferentShapesOnTheSameThreadsStartClean) {
  std::unique_ptr<transport::Transport> shm;
  Status made = transport::create_transport("shm", transport::TransportOptions{}, &shm);
  ASSERT_TRUE(made.ok()) << made.to_string();
  ChannelPair zero_to_one, one_to_zero;
  Status c1 = connect_pair(shm.get(), &zero_to_one);
  ASSERT_TRUE(c1.ok()) << c1.to_string();
  Status c2 = connect_pair(shm.get(), &one_to_zero);
  ASSERT_TRUE(c2.ok()) << c2.to_string();
  TwoRankLinks links0(zero_to_one.send.get(), one_to_zero.recv.get());
  TwoRankLinks links1(one_to_zero.send.get(), zero_to_one.recv.get());

  struct Shape {
    size_t count;
    size_t chunk_bytes;
    int max_in_flight;
  };
  // 256 KiB in 1 KiB chunks: hundreds of steps per rank, with a window wider than any
  // channel takes (the executor caps it at transport::kMaxRequests); then 8 bytes with a
  // window of one; then the large one again, on the same threads.
  const std::vector<Shape> shapes = {
      {64 * 1024, 1024, 1000}, {2, 1 << 20, 1}, {64 * 1024, 1024, 8}, {2, 1 << 20, 8},
      {64 * 1024 + 3, 4096, 32}};
  Status results[2];
  std::string wrong[2];
  auto rank_thread = [&](int rank, PeerLinks& links) {
    for (int round = 0; round < 3 && results[rank].ok() && wrong[rank].empty(); ++round) {
      for (const Shape& shape : shapes) {
        results[rank] = run_allreduce(rank, shape.count, shape.chunk_bytes, shape.max_in_flight,
                                      links, &wrong[rank]);
        if (!results[rank].ok() || !wrong[rank].empty()) break;
      }
    }
  };
  std::thread other([&] { rank_thread(1, links1); });
  rank_thread(0, links0);
  other.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].to_string();
    EXPECT_EQ(wrong[r], "");
  }
}

}  // namespace
}  // namespace ciuic::coll
