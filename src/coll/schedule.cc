#include "coll/schedule.h"

#include <cstdio>

namespace ciuic::coll {

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::kAllreduce: return "allreduce";
    case Collective::kAllgather: return "allgather";
    case Collective::kReduceScatter: return "reduce_scatter";
    case Collective::kBroadcast: return "broadcast";
    case Collective::kReduce: return "reduce";
    case Collective::kAlltoall: return "alltoall";
    case Collective::kSend: return "send";
    case Collective::kRecv: return "recv";
    case Collective::kBarrier: return "barrier";
  }
  return "?";
}

uint32_t Schedule::add(Step step, std::initializer_list<uint32_t> after) {
  return add(step, std::vector<uint32_t>(after));
}

uint32_t Schedule::add(Step step, const std::vector<uint32_t>& after) {
  step.dep_begin = static_cast<uint32_t>(deps.size());
  step.dep_count = static_cast<uint32_t>(after.size());
  deps.insert(deps.end(), after.begin(), after.end());
  steps.push_back(step);
  return static_cast<uint32_t>(steps.size() - 1);
}

void Schedule::finalize() {
  const size_t n = steps.size();
  dependents_begin.assign(n + 1, 0);
  for (const Step& st : steps)
    for (uint32_t d = 0; d < st.dep_count; ++d) ++dependents_begin[deps[st.dep_begin + d] + 1];
  for (size_t i = 0; i < n; ++i) dependents_begin[i + 1] += dependents_begin[i];
  dependents.assign(deps.size(), 0);
  std::vector<uint32_t> fill(dependents_begin.begin(), dependents_begin.end() - 1);
  peers.clear();
  for (uint32_t i = 0; i < n; ++i) {
    const Step& st = steps[i];
    for (uint32_t d = 0; d < st.dep_count; ++d) dependents[fill[deps[st.dep_begin + d]]++] = i;
    if (st.kind != StepKind::kSend && st.kind != StepKind::kRecv) continue;
    PeerSteps* p = nullptr;
    for (auto& q : peers)
      if (q.peer == st.peer) p = &q;
    if (p == nullptr) {
      peers.push_back(PeerSteps{st.peer, {}, {}});
      p = &peers.back();
    }
    (st.kind == StepKind::kSend ? p->sends : p->recvs).push_back(i);
  }
}

const char* buffer_name(Buffer b) {
  switch (b) {
    case Buffer::kSend: return "send";
    case Buffer::kRecv: return "recv";
    case Buffer::kScratch: return "scratch";
  }
  return "?";
}

std::string Schedule::to_string() const {
  std::string out = std::string(collective_name(collective)) + " " + algorithm + " rank " +
                    std::to_string(rank) + "/" + std::to_string(nranks) + ", " +
                    std::to_string(steps.size()) + " steps, scratch " +
                    std::to_string(scratch_bytes) + " B\n";
  char line[256];
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    switch (s.kind) {
      case StepKind::kSend:
        std::snprintf(line, sizeof(line), "%4zu send %zu B %s+%zu -> rank %d", i, s.bytes,
                      buffer_name(s.src.buffer), s.src.offset, s.peer);
        break;
      case StepKind::kRecv:
        std::snprintf(line, sizeof(line), "%4zu recv %zu B rank %d -> %s+%zu", i, s.bytes, s.peer,
                      buffer_name(s.dst.buffer), s.dst.offset);
        break;
      case StepKind::kReduce:
        std::snprintf(line, sizeof(line), "%4zu reduce %zu B %s+%zu = %s+%zu op %s+%zu", i, s.bytes,
                      buffer_name(s.dst.buffer), s.dst.offset, buffer_name(s.src.buffer),
                      s.src.offset, buffer_name(s.src2.buffer), s.src2.offset);
        break;
      case StepKind::kCopy:
        std::snprintf(line, sizeof(line), "%4zu copy %zu B %s+%zu -> %s+%zu", i, s.bytes,
                      buffer_name(s.src.buffer), s.src.offset, buffer_name(s.dst.buffer),
                      s.dst.offset);
        break;
      case StepKind::kAverage:
        std::snprintf(line, sizeof(line), "%4zu average %zu B %s+%zu", i, s.bytes,
                      buffer_name(s.dst.buffer), s.dst.offset);
        break;
    }
    out += line;
    if (s.dep_count > 0) {
      out += " after";
      for (uint32_t d = 0; d < s.dep_count; ++d) out += " " + std::to_string(deps[s.dep_begin + d]);
    }
    out += "\n";
  }
  return out;
}

}  // namespace ciuic::coll
