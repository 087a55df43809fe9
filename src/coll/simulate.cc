#include "coll/simulate.h"

#include <cstring>
#include <deque>
#include <map>

#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

char* address(const Buffers& b, const BufferRange& r) {
  switch (r.buffer) {
    case Buffer::kSend: return const_cast<char*>(static_cast<const char*>(b.send)) + r.offset;
    case Buffer::kRecv: return static_cast<char*>(b.recv) + r.offset;
    case Buffer::kScratch: return static_cast<char*>(b.scratch) + r.offset;
  }
  return nullptr;
}

struct RankState {
  std::vector<bool> done;
  size_t finished = 0;
  // Next unfinished network step index per (peer, kind): enforces per-peer order.
  std::map<std::pair<int, bool>, std::deque<uint32_t>> lanes;
};

}  // namespace

Status simulate_dataflow(const std::vector<Schedule>& schedules, const std::vector<Buffers>& buffers) {
  const int n = static_cast<int>(schedules.size());
  std::vector<RankState> ranks(static_cast<size_t>(n));
  // In-flight messages, keyed by (from, to).
  std::map<std::pair<int, int>, std::deque<std::vector<char>>> wire;
  for (int r = 0; r < n; ++r) {
    const Schedule& s = schedules[r];
    ranks[r].done.assign(s.steps.size(), false);
    for (uint32_t i = 0; i < s.steps.size(); ++i) {
      const Step& st = s.steps[i];
      if (st.kind == StepKind::kSend || st.kind == StepKind::kRecv) {
        if (st.peer < 0 || st.peer >= n || st.peer == r)
          return internal_error("rank " + std::to_string(r) + " step " + std::to_string(i) +
                                " names peer " + std::to_string(st.peer));
        ranks[r].lanes[{st.peer, st.kind == StepKind::kSend}].push_back(i);
      }
    }
  }
  bool progressed = true;
  while (progressed) {
    progressed = false;
    for (int r = 0; r < n; ++r) {
      const Schedule& s = schedules[r];
      RankState& rs = ranks[r];
      const size_t elem = reduce::datatype_size(s.datatype);
      for (uint32_t i = 0; i < s.steps.size(); ++i) {
        if (rs.done[i]) continue;
        const Step& st = s.steps[i];
        bool ready = true;
        for (uint32_t d = 0; d < st.dep_count && ready; ++d) ready = rs.done[s.deps[st.dep_begin + d]];
        if (!ready) continue;
        switch (st.kind) {
          case StepKind::kSend: {
            auto& lane = rs.lanes[{st.peer, true}];
            if (lane.front() != i) continue;
            const char* p = address(buffers[r], st.src);
            wire[{r, st.peer}].emplace_back(p, p + st.bytes);
            lane.pop_front();
            break;
          }
          case StepKind::kRecv: {
            auto& lane = rs.lanes[{st.peer, false}];
            auto& queue = wire[{st.peer, r}];
            if (lane.front() != i || queue.empty()) continue;
            if (queue.front().size() != st.bytes)
              return internal_error("rank " + std::to_string(r) + " step " + std::to_string(i) +
                                    " expects " + std::to_string(st.bytes) + " B from rank " +
                                    std::to_string(st.peer) + ", which sent " +
                                    std::to_string(queue.front().size()) + " B");
            if (st.bytes > 0) std::memcpy(address(buffers[r], st.dst), queue.front().data(), st.bytes);
            queue.pop_front();
            lane.pop_front();
            break;
          }
          case StepKind::kReduce:
            reduce::reduce(address(buffers[r], st.dst), address(buffers[r], st.src),
                           address(buffers[r], st.src2), st.bytes / elem, s.datatype, s.op);
            break;
          case StepKind::kCopy:
            if (st.bytes > 0)
              std::memmove(address(buffers[r], st.dst), address(buffers[r], st.src), st.bytes);
            break;
          case StepKind::kAverage:
            reduce::finish_average(address(buffers[r], st.dst), st.bytes / elem, s.datatype, s.nranks);
            break;
        }
        rs.done[i] = true;
        ++rs.finished;
        progressed = true;
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    if (ranks[r].finished == schedules[r].steps.size()) continue;
    for (uint32_t i = 0; i < schedules[r].steps.size(); ++i) {
      if (ranks[r].done[i]) continue;
      const Step& st = schedules[r].steps[i];
      return internal_error("deadlock: rank " + std::to_string(r) + " step " + std::to_string(i) +
                            (st.kind == StepKind::kRecv ? " waits for a message from rank " +
                                                              std::to_string(st.peer)
                                                        : std::string(" can never run")));
    }
  }
  for (const auto& [key, queue] : wire) {
    if (!queue.empty())
      return internal_error(std::to_string(queue.size()) + " message(s) from rank " +
                            std::to_string(key.first) + " to rank " + std::to_string(key.second) +
                            " were never received");
  }
  return Status::Ok();
}

}  // namespace ciuic::coll
