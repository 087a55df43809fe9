#include "coll/simulate.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>

#include "reduce/reduce.h"

namespace ciuic::coll {
namespace {

std::string where(const BufferRange& r) {
  return std::string(buffer_name(r.buffer)) + "+" + std::to_string(r.offset);
}

// "rank 2 step 7 (recv 64 B from rank 1 into scratch+0)", for error messages.
std::string describe(const Schedule& s, uint32_t i) {
  const Step& st = s.steps[i];
  std::string what = "rank " + std::to_string(s.rank) + " step " + std::to_string(i) + " (";
  const std::string bytes = std::to_string(st.bytes) + " B ";
  switch (st.kind) {
    case StepKind::kSend:
      return what + "send " + bytes + "from " + where(st.src) + " to rank " + std::to_string(st.peer) + ")";
    case StepKind::kRecv:
      return what + "recv " + bytes + "from rank " + std::to_string(st.peer) + " into " + where(st.dst) + ")";
    case StepKind::kReduce:
      return what + "reduce " + bytes + "into " + where(st.dst) + " from " + where(st.src) + ", " +
             where(st.src2) + ")";
    case StepKind::kCopy:
      return what + "copy " + bytes + "from " + where(st.src) + " to " + where(st.dst) + ")";
    case StepKind::kAverage:
      return what + "average " + bytes + "at " + where(st.dst) + ")";
  }
  return what + "?)";
}

char* address(const Buffers& b, const BufferRange& r) { return buffer_address(&b, r); }

bool is_network(StepKind k) { return k == StepKind::kSend || k == StepKind::kRecv; }

struct Message {
  std::vector<char> payload;
  uint32_t send_step;
};

// One peer and direction of one rank: its network steps in schedule order, which is
// the order messages match in.
struct Lane {
  std::vector<uint32_t> steps;
  size_t next = 0;              // first unfinished entry of `steps`
  std::deque<Message> arrived;  // receive lanes: sent, not yet received
};

struct RankRun {
  std::vector<uint32_t> missing;        // unfinished dependencies per step
  std::vector<uint32_t> dependents_at;  // dependents of step i: [at[i], at[i+1])
  std::vector<uint32_t> dependents;
  std::vector<uint32_t> lane_of;        // network steps: index into lanes
  std::vector<Lane> lanes;
  std::unordered_map<int, uint32_t> recv_lane_from;  // peer -> lane
  std::vector<bool> done;
  size_t finished = 0;
};

// Checks one step's use of one buffer range before anything runs.
Status check_range(const Schedule& s, const Buffers& b, uint32_t i, const BufferRange& r, size_t bytes) {
  if (bytes == 0) return Status::Ok();
  const void* base = r.buffer == Buffer::kSend ? b.send : r.buffer == Buffer::kRecv ? b.recv : b.scratch;
  if (r.buffer == Buffer::kScratch && r.offset + bytes > s.scratch_bytes)
    return internal_error(describe(s, i) + " uses scratch bytes [" + std::to_string(r.offset) + ", " +
                          std::to_string(r.offset + bytes) + ") beyond the schedule's scratch_bytes " +
                          std::to_string(s.scratch_bytes));
  if (base == nullptr)
    return internal_error(describe(s, i) + " uses the " + buffer_name(r.buffer) +
                          " buffer, which this rank did not provide (in place?)");
  return Status::Ok();
}

Status prepare(const Schedule& s, const Buffers& b, int rank, int nranks, RankRun* run) {
  if (s.rank != rank || s.nranks != nranks)
    return invalid_argument("schedule " + std::to_string(rank) + " was built for rank " +
                            std::to_string(s.rank) + " of " + std::to_string(s.nranks) +
                            ", simulated as rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  const size_t elem = reduce::datatype_size(s.datatype);
  if (elem == 0) return invalid_argument("schedule of rank " + std::to_string(rank) + " has an invalid datatype");
  const uint32_t n = static_cast<uint32_t>(s.steps.size());
  run->missing.assign(n, 0);
  run->done.assign(n, false);
  run->lane_of.assign(n, UINT32_MAX);
  run->dependents_at.assign(n + 1, 0);
  std::unordered_map<int, uint32_t> send_lane_to;
  for (uint32_t i = 0; i < n; ++i) {
    const Step& st = s.steps[i];
    if (static_cast<size_t>(st.dep_begin) + st.dep_count > s.deps.size())
      return internal_error(describe(s, i) + " lists dependencies past the end of the schedule's list");
    for (uint32_t k = 0; k < st.dep_count; ++k) {
      const uint32_t d = s.deps[st.dep_begin + k];
      if (d >= i)
        return internal_error(describe(s, i) + " depends on step " + std::to_string(d) +
                              ", which is not an earlier step");
      ++run->dependents_at[d + 1];
    }
    run->missing[i] = st.dep_count;
    if (is_network(st.kind)) {
      if (st.peer < 0 || st.peer >= nranks || st.peer == rank)
        return internal_error(describe(s, i) + " names peer " + std::to_string(st.peer) +
                              ", which is not another rank of the " + std::to_string(nranks));
      auto& index = st.kind == StepKind::kSend ? send_lane_to : run->recv_lane_from;
      auto [it, fresh] = index.emplace(st.peer, static_cast<uint32_t>(run->lanes.size()));
      if (fresh) run->lanes.emplace_back();
      run->lanes[it->second].steps.push_back(i);
      run->lane_of[i] = it->second;
    }
    const bool reads_src = st.kind == StepKind::kSend || st.kind == StepKind::kCopy || st.kind == StepKind::kReduce;
    if (reads_src) CIUIC_RETURN_IF_ERROR(check_range(s, b, i, st.src, st.bytes));
    if (st.kind == StepKind::kReduce) CIUIC_RETURN_IF_ERROR(check_range(s, b, i, st.src2, st.bytes));
    if (st.kind != StepKind::kSend) CIUIC_RETURN_IF_ERROR(check_range(s, b, i, st.dst, st.bytes));
    if ((st.kind == StepKind::kReduce || st.kind == StepKind::kAverage) && st.bytes % elem != 0)
      return internal_error(describe(s, i) + " covers a partial element of " + reduce::datatype_name(s.datatype));
  }
  for (uint32_t i = 0; i < n; ++i) run->dependents_at[i + 1] += run->dependents_at[i];
  run->dependents.resize(run->dependents_at[n]);
  std::vector<uint32_t> fill(run->dependents_at.begin(), run->dependents_at.end() - 1);
  for (uint32_t i = 0; i < n; ++i) {
    const Step& st = s.steps[i];
    for (uint32_t k = 0; k < st.dep_count; ++k) run->dependents[fill[s.deps[st.dep_begin + k]]++] = i;
  }
  return Status::Ok();
}

uint32_t first_unfinished(const RankRun& run) {
  for (uint32_t i = 0; i < run.done.size(); ++i)
    if (!run.done[i]) return i;
  return UINT32_MAX;
}

// Called when some rank is stuck. Its first unfinished step has every dependency done
// (they are earlier steps), and sends never block, so it is a receive at the head of its
// lane whose message never came: name it, and what its peer is doing instead.
Status deadlock_report(const std::vector<Schedule>& schedules, const std::vector<RankRun>& runs) {
  int stuck = 0, first = -1;
  for (size_t r = 0; r < runs.size(); ++r) {
    if (runs[r].finished == schedules[r].steps.size()) continue;
    if (stuck++ == 0) first = static_cast<int>(r);
  }
  const Schedule& s = schedules[first];
  const RankRun& run = runs[first];
  const uint32_t i = first_unfinished(run);
  const Step& st = s.steps[i];
  std::string msg = "deadlock (" + std::to_string(stuck) + " of " + std::to_string(runs.size()) +
                    " ranks stuck): " + describe(s, i);
  if (st.kind != StepKind::kRecv) return internal_error(msg + " can never run");
  const Lane& lane = run.lanes[run.lane_of[i]];
  msg += " waits for message #" + std::to_string(lane.next + 1) + " from rank " +
         std::to_string(st.peer) + ", which never comes: rank " + std::to_string(st.peer);
  const RankRun& other = runs[st.peer];
  const uint32_t j = first_unfinished(other);
  if (j == UINT32_MAX) {
    msg += " finished all its steps, having sent only " + std::to_string(lane.next) + " message(s) to rank " +
           std::to_string(first);
  } else {
    msg += " is itself waiting at " + describe(schedules[st.peer], j);
  }
  return internal_error(msg);
}

}  // namespace

Status simulate_dataflow(const std::vector<Schedule>& schedules, const std::vector<Buffers>& buffers,
                         const SimulateOptions& options) {
  const int n = static_cast<int>(schedules.size());
  if (buffers.size() != schedules.size())
    return invalid_argument("simulate_dataflow: " + std::to_string(schedules.size()) + " schedules but " +
                            std::to_string(buffers.size()) + " buffer sets");
  std::vector<RankRun> runs(static_cast<size_t>(n));
  std::vector<std::pair<int, uint32_t>> runnable;  // candidates; re-checked when picked
  for (int r = 0; r < n; ++r) {
    CIUIC_RETURN_IF_ERROR(prepare(schedules[r], buffers[r], r, n, &runs[r]));
    for (uint32_t i = 0; i < runs[r].missing.size(); ++i)
      if (runs[r].missing[i] == 0) runnable.emplace_back(r, i);
  }
  std::mt19937_64 random(options.order_seed);
  while (!runnable.empty()) {
    if (options.order_seed != 0) std::swap(runnable[random() % runnable.size()], runnable.back());
    const auto [r, i] = runnable.back();
    runnable.pop_back();
    const Schedule& s = schedules[r];
    RankRun& run = runs[r];
    if (run.done[i] || run.missing[i] != 0) continue;
    const Step& st = s.steps[i];
    const Buffers& b = buffers[r];
    if (is_network(st.kind)) {
      Lane& lane = run.lanes[run.lane_of[i]];
      if (lane.steps[lane.next] != i) continue;  // an earlier step to this peer goes first
      if (st.kind == StepKind::kSend) {
        RankRun& receiver = runs[st.peer];
        auto it = receiver.recv_lane_from.find(r);
        if (it == receiver.recv_lane_from.end())
          return internal_error(describe(s, i) + ": rank " + std::to_string(st.peer) +
                                " never receives from rank " + std::to_string(r) +
                                ", so this message would never be received");
        Lane& in = receiver.lanes[it->second];
        const char* p = st.bytes > 0 ? address(b, st.src) : nullptr;
        in.arrived.push_back(Message{std::vector<char>(p, p + st.bytes), i});
        if (in.next < in.steps.size()) runnable.emplace_back(st.peer, in.steps[in.next]);
      } else {
        if (lane.arrived.empty()) continue;  // the sender's step will wake this one
        const Message& m = lane.arrived.front();
        if (m.payload.size() != st.bytes)
          return internal_error("size mismatch: " + describe(s, i) + " expects " + std::to_string(st.bytes) +
                                " B as message #" + std::to_string(lane.next + 1) + " from rank " +
                                std::to_string(st.peer) + ", but " + describe(schedules[st.peer], m.send_step) +
                                " sent " + std::to_string(m.payload.size()) + " B");
        if (st.bytes > 0) std::memcpy(address(b, st.dst), m.payload.data(), st.bytes);
        lane.arrived.pop_front();
      }
      if (++lane.next < lane.steps.size()) runnable.emplace_back(r, lane.steps[lane.next]);
    } else {
      run_local_step(s, st, &b);
    }
    run.done[i] = true;
    ++run.finished;
    for (uint32_t k = run.dependents_at[i]; k < run.dependents_at[i + 1]; ++k) {
      const uint32_t d = run.dependents[k];
      if (--run.missing[d] == 0) runnable.emplace_back(r, d);
    }
  }
  for (int r = 0; r < n; ++r)
    if (runs[r].finished != schedules[r].steps.size()) return deadlock_report(schedules, runs);
  for (int r = 0; r < n; ++r) {
    for (const auto& [peer, lane_index] : runs[r].recv_lane_from) {
      const Lane& lane = runs[r].lanes[lane_index];
      if (lane.arrived.empty()) continue;
      return internal_error(std::to_string(lane.arrived.size()) + " message(s) from rank " +
                            std::to_string(peer) + " to rank " + std::to_string(r) +
                            " were never received, the first sent by " +
                            describe(schedules[peer], lane.arrived.front().send_step) + "; rank " +
                            std::to_string(r) + " receives only " + std::to_string(lane.steps.size()) +
                            " from it");
    }
  }
  return Status::Ok();
}

namespace {

// One step's use of a byte range: `space` tells which memory (aliases resolved).
struct Touch {
  uint32_t space;
  size_t begin, end;
  uint32_t step;
  bool write;
};

struct Access {
  uint32_t step;
  bool write;
};

}  // namespace

Status check_hazards(const Schedule& s, const BufferAliasing& aliasing) {
  const size_t n = s.steps.size();
  if (n > kMaxHazardCheckSteps)
    return unsupported("hazard check of a " + std::to_string(n) + "-step schedule: at most " +
                       std::to_string(kMaxHazardCheckSteps) + " steps");
  // before[b] has bit a set when step a completes before step b may start (transitively).
  // Dependencies point to earlier steps, so one pass in index order closes the relation.
  const size_t words = (n + 63) / 64;
  std::vector<uint64_t> before(n * words, 0);
  for (uint32_t i = 0; i < n; ++i) {
    const Step& st = s.steps[i];
    if (static_cast<size_t>(st.dep_begin) + st.dep_count > s.deps.size())
      return internal_error(describe(s, i) + " lists dependencies past the end of the schedule's list");
    uint64_t* row = &before[i * words];
    for (uint32_t k = 0; k < st.dep_count; ++k) {
      const uint32_t d = s.deps[st.dep_begin + k];
      if (d >= i)
        return internal_error(describe(s, i) + " depends on step " + std::to_string(d) +
                              ", which is not an earlier step");
      const uint64_t* dep_row = &before[d * words];
      for (size_t w = 0; w <= d / 64; ++w) row[w] |= dep_row[w];
      row[d / 64] |= uint64_t{1} << (d % 64);
    }
  }
  auto ordered = [&](uint32_t a, uint32_t b) { return (before[b * words + a / 64] >> (a % 64)) & 1; };

  // Scratch is one memory for every buffer set (the executor's rule); send and receive
  // buffers are per set, and merge where the caller's buffers alias.
  auto space_of = [&](const BufferRange& r, size_t* offset) -> uint32_t {
    *offset = r.offset;
    if (r.buffer == Buffer::kScratch) return 0;
    Buffer b = r.buffer;
    if (b == Buffer::kRecv && aliasing.recv_inside_send) {
      b = Buffer::kSend;
      *offset += aliasing.recv_offset_in_send;
    }
    return 1 + 2u * r.set + (b == Buffer::kRecv ? 1 : 0);
  };
  std::vector<Touch> touches;
  auto touch = [&](uint32_t i, const BufferRange& r, size_t bytes, bool write) {
    if (bytes == 0) return;
    size_t offset = 0;
    const uint32_t space = space_of(r, &offset);
    touches.push_back(Touch{space, offset, offset + bytes, i, write});
  };
  for (uint32_t i = 0; i < n; ++i) {
    const Step& st = s.steps[i];
    switch (st.kind) {
      case StepKind::kSend: touch(i, st.src, st.bytes, false); break;
      case StepKind::kRecv: touch(i, st.dst, st.bytes, true); break;
      case StepKind::kReduce:
        touch(i, st.src, st.bytes, false);
        touch(i, st.src2, st.bytes, false);
        touch(i, st.dst, st.bytes, true);
        break;
      case StepKind::kCopy:
        touch(i, st.src, st.bytes, false);
        touch(i, st.dst, st.bytes, true);
        break;
      case StepKind::kAverage: touch(i, st.dst, st.bytes, true); break;
    }
  }
  // Per memory, cut the bytes at every range boundary; each piece lists its accesses in
  // step order. A piece is race-free when each access is ordered after the last write
  // before it and each write after every read since that write: the rest follows by
  // transitivity, so the check is linear in the accesses.
  std::stable_sort(touches.begin(), touches.end(),
                   [](const Touch& a, const Touch& b) { return a.space < b.space; });
  for (size_t first = 0; first < touches.size();) {
    size_t last = first;
    while (last < touches.size() && touches[last].space == touches[first].space) ++last;
    std::vector<size_t> cuts;
    for (size_t t = first; t < last; ++t) {
      cuts.push_back(touches[t].begin);
      cuts.push_back(touches[t].end);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<std::vector<Access>> pieces(cuts.size() - 1);
    for (size_t t = first; t < last; ++t) {
      const size_t lo = std::lower_bound(cuts.begin(), cuts.end(), touches[t].begin) - cuts.begin();
      const size_t hi = std::lower_bound(cuts.begin(), cuts.end(), touches[t].end) - cuts.begin();
      for (size_t p = lo; p < hi; ++p) pieces[p].push_back(Access{touches[t].step, touches[t].write});
    }
    const uint32_t space = touches[first].space;
    std::string memory = space == 0 ? "scratch" : std::string(space % 2 == 1 ? "send" : "recv") +
                                                      " buffer (set " + std::to_string((space - 1) / 2) + ")";
    if (space % 2 == 1 && aliasing.recv_inside_send)
      memory += " (recvbuf lies at its byte " + std::to_string(aliasing.recv_offset_in_send) + ")";
    for (size_t p = 0; p < pieces.size(); ++p) {
      auto race = [&](uint32_t a, uint32_t b) {
        return internal_error(std::string("data race in ") + collective_name(s.collective) + " " + s.algorithm +
                              ": " + describe(s, a) + " and " + describe(s, b) + " both touch " + memory +
                              " bytes [" + std::to_string(cuts[p]) + ", " + std::to_string(cuts[p + 1]) +
                              "), at least one writing, and neither depends on the other");
      };
      int64_t last_write = -1;
      std::vector<uint32_t> reads;
      for (const Access& a : pieces[p]) {
        const uint32_t w = static_cast<uint32_t>(last_write);
        if (last_write >= 0 && w != a.step && !ordered(w, a.step)) return race(w, a.step);
        if (!a.write) {
          reads.push_back(a.step);
          continue;
        }
        for (uint32_t rd : reads)
          if (rd != a.step && !ordered(rd, a.step)) return race(rd, a.step);
        reads.clear();
        last_write = a.step;
      }
    }
    first = last;
  }
  return Status::Ok();
}

}  // namespace ciuic::coll
