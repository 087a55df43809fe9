// One algorithm case run end to end without a network: every rank's schedule built with
// build_schedule, checked for structural properties and data races, run through
// simulate_dataflow over real buffers laid out as the C API lays them out (in place
// included), and compared with an independent reference. Returns "" or what went wrong.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coll/algorithms.h"
#include "coll/builder.h"
#include "coll/simulate.h"
#include "coll/tuner.h"
#include "reduce/reduce.h"
#include "support/reference.h"

namespace ciuic::coll::schedule_testing {

// kMixed: odd ranks in place, even ranks not (each rank decides for itself in the API).
enum class Placement { kOutOfPlace, kInPlace, kInPlaceMpi, kMixed };

struct Case {
  Collective collective = Collective::kAllreduce;
  std::string algorithm;
  int nranks = 1;
  size_t count = 0;
  ciuic_datatype_t datatype = CIUIC_FLOAT32;
  ciuic_op_t op = CIUIC_SUM;
  int root = 0;
  Placement placement = Placement::kOutOfPlace;
  size_t chunk_bytes = 1 << 20;
  int scratch_slots = 16;
  uint64_t order_seed = 0;  // simulate_dataflow's run order
  // Which node each rank is on (the hierarchical algorithms); null: unknown.
  std::shared_ptr<const std::vector<int>> node_of_rank;

  std::string describe() const {
    static const char* kPlace[] = {"out of place", "in place", "in place (MPI)", "mixed in place"};
    std::string nodes;
    if (node_of_rank) {
      nodes = " nodes=";
      for (size_t r = 0; r < node_of_rank->size() && r < 64; ++r)
        nodes += (r ? "," : "") + std::to_string((*node_of_rank)[r]);
      if (node_of_rank->size() > 64) nodes += ",...";
    }
    return std::string(collective_name(collective)) + "/" + algorithm + nodes + " n=" + std::to_string(nranks) +
           " count=" + std::to_string(count) + " " + reduce::datatype_name(datatype) + " " +
           reduce::op_name(op) + " root=" + std::to_string(root) + " " +
           kPlace[static_cast<int>(placement)] + " chunk=" + std::to_string(chunk_bytes) +
           " slots=" + std::to_string(scratch_slots) + " seed=" + std::to_string(order_seed);
  }
};

inline bool reduces(Collective c) {
  return c == Collective::kAllreduce || c == Collective::kReduceScatter || c == Collective::kReduce;
}
inline bool point_to_point(Collective c) { return c == Collective::kSend || c == Collective::kRecv; }

inline bool in_place_for(const Case& c, int rank) {
  if (c.collective == Collective::kBroadcast && rank != c.root) return true;  // as the C API sets it
  switch (c.placement) {
    case Placement::kOutOfPlace: return false;
    case Placement::kInPlace: case Placement::kInPlaceMpi: return true;
    case Placement::kMixed: return rank % 2 == 1;
  }
  return false;
}

// Point-to-point cases pair ranks up: 2k sends to 2k+1; an odd last rank sits out.
inline int p2p_partner(int rank, int nranks) {
  if (rank % 2 == 0) return rank + 1 < nranks ? rank + 1 : -1;
  return rank - 1;
}

// A byte that differs between ranks (131 is odd, so 131*rank differs mod 256 for any
// 256 ranks) and along the buffer: tells every block of every rank apart.
inline char pattern(int rank, size_t byte) {
  return static_cast<char>((static_cast<size_t>(rank) * 131 + byte * 29 + (byte >> 8) * 7 + 17) & 0xff);
}

constexpr size_t kGuardBytes = 32;
constexpr char kGuard = 0x5a;

// One rank's memory: logical sizes (what the API promises) plus a guard tail each.
struct RankMemory {
  std::vector<char> send, recv, scratch;
  size_t send_bytes = 0, recv_bytes = 0;
  bool recv_in_send = false;  // NCCL in-place reduce_scatter: recvbuf inside sendbuf
  Buffers buffers;
  BufferAliasing aliasing;
};

inline void allocate(std::vector<char>* v, size_t bytes) { v->assign(bytes + kGuardBytes, kGuard); }
inline bool guard_intact(const std::vector<char>& v, size_t bytes) {
  return v.empty() || std::all_of(v.begin() + static_cast<long>(bytes), v.end(), [](char b) { return b == kGuard; });
}

inline std::string rank_text(int r) { return "rank " + std::to_string(r); }

// Sets up rank r's buffers and input, as the C API would see them.
inline void prepare_memory(const Case& c, int r, const CollectiveArgs& args, RankMemory* m) {
  const size_t elem = reduce::datatype_size(c.datatype);
  const size_t n = static_cast<size_t>(c.nranks), block = c.count * elem;
  const bool in_place = args.in_place;
  size_t input_bytes = 0, output_bytes = 0;
  switch (c.collective) {
    case Collective::kAllreduce: input_bytes = output_bytes = block; break;
    case Collective::kAllgather: input_bytes = block; output_bytes = block * n; break;
    case Collective::kReduceScatter: input_bytes = block * n; output_bytes = block; break;
    case Collective::kBroadcast: input_bytes = r == c.root ? block : 0; output_bytes = block; break;
    case Collective::kReduce:
      input_bytes = block;
      output_bytes = r == c.root || in_place ? block : 0;  // a non-root's recvbuf may be NULL
      break;
    case Collective::kAlltoall: input_bytes = output_bytes = block * n; break;
    case Collective::kSend: input_bytes = block; break;
    case Collective::kRecv: output_bytes = block; break;
    case Collective::kBarrier: break;
  }
  // Where the input lives: in place, inside recvbuf (at the rank's block for allgather).
  size_t input_at = 0;
  if (in_place && !(c.collective == Collective::kReduceScatter && !args.in_place_mpi)) {
    m->send_bytes = 0;
    m->recv_bytes = std::max(output_bytes, input_bytes);
    if (c.collective == Collective::kAllgather) input_at = static_cast<size_t>(r) * block;
  } else if (in_place) {  // NCCL in-place reduce_scatter: recvbuf == sendbuf + rank * count
    m->recv_in_send = true;
    m->send_bytes = input_bytes;
    m->recv_bytes = output_bytes;
    m->aliasing = BufferAliasing{true, static_cast<size_t>(r) * block};
  } else {
    m->send_bytes = input_bytes;
    m->recv_bytes = output_bytes;
  }
  allocate(&m->send, m->send_bytes);
  if (!m->recv_in_send) allocate(&m->recv, m->recv_bytes);
  char* input = m->send_bytes > 0 ? m->send.data() : m->recv.data() + input_at;
  if (input_bytes > 0) {
    if (reduces(c.collective)) {
      ciuic::testing::fill_input(input, input_bytes / elem, c.datatype, c.op, r);
    } else {
      for (size_t b = 0; b < input_bytes; ++b) input[b] = pattern(r, b);
    }
  }
  m->buffers.send = m->send_bytes > 0 ? m->send.data() : nullptr;
  m->buffers.recv = m->recv_in_send ? m->send.data() + m->aliasing.recv_offset_in_send
                    : m->recv_bytes > 0 ? m->recv.data() : nullptr;
}

// What rank r's recvbuf must hold afterwards ("" = nothing promised), as bytes.
inline std::vector<char> expected_output(const Case& c, int r) {
  const size_t elem = reduce::datatype_size(c.datatype);
  const size_t n = static_cast<size_t>(c.nranks), block = c.count * elem;
  std::vector<char> want;
  auto reduced = [&](size_t first) {
    want.resize(block);
    for (size_t i = 0; i < c.count; ++i)
      ciuic::testing::reduced_value(c.datatype, c.op, c.nranks, first + i, want.data() + i * elem);
  };
  switch (c.collective) {
    case Collective::kAllreduce: reduced(0); break;
    case Collective::kReduceScatter: reduced(static_cast<size_t>(r) * c.count); break;
    case Collective::kReduce: if (r == c.root) reduced(0); break;
    case Collective::kAllgather:
      want.resize(block * n);
      for (size_t j = 0; j < n; ++j)
        for (size_t b = 0; b < block; ++b) want[j * block + b] = pattern(static_cast<int>(j), b);
      break;
    case Collective::kBroadcast:
      want.resize(block);
      for (size_t b = 0; b < block; ++b) want[b] = pattern(c.root, b);
      break;
    case Collective::kAlltoall:  // block j comes from rank j's block r
      want.resize(block * n);
      for (size_t j = 0; j < n; ++j)
        for (size_t b = 0; b < block; ++b) want[j * block + b] = pattern(static_cast<int>(j), r * block + b);
      break;
    case Collective::kRecv:
      if (r % 2 == 1) {
        want.resize(block);
        for (size_t b = 0; b < block; ++b) want[b] = pattern(r - 1, b);
      }
      break;
    default: break;
  }
  return want;
}

// Bytes a rank sends (= receives) in recursive doubling: log2 of the largest power of two
// <= n whole buffers; of a pair below 2*rem, the even rank hands over and gets back one,
// the odd one trades one more.
inline size_t recursive_doubling_bytes(int rank, int n, size_t bytes) {
  int pow2 = 1, rounds = 0;
  while (pow2 * 2 <= n) pow2 *= 2, ++rounds;
  const int rem = n - pow2;
  if (rank < 2 * rem) return rank % 2 == 0 ? bytes : (static_cast<size_t>(rounds) + 1) * bytes;
  return static_cast<size_t>(rounds) * bytes;
}

// Structural properties of one rank's schedule; "" when all hold.
inline std::string check_properties(const Case& c, const CollectiveArgs& args, const Schedule& s,
                                    const RankMemory& m) {
  const size_t elem = reduce::datatype_size(c.datatype);
  const size_t chunk = whole_elements(c.chunk_bytes, elem);
  // Hierarchical schedules name what they are made of: "hierarchical(inter tree, 2 blocks)",
  // or the flat algorithm that ran instead, "hierarchical(flat ring)".
  const bool fell_back = s.algorithm.rfind("hierarchical(flat ", 0) == 0;
  const std::string algo = fell_back ? s.algorithm.substr(18, s.algorithm.size() - 19) : s.algorithm;
  const bool hierarchical = !fell_back && s.algorithm.rfind("hierarchical(", 0) == 0;
  const bool chunked = algo == "ring" || algo == "chain" || algo == "pairwise" ||
                       algo == "tree" || algo == "rabenseifner" || algo == "torus" ||
                       (hierarchical && algo.find("recursive_doubling") == std::string::npos);
  const std::string who = rank_text(args.rank) + " ";
  size_t sent = 0, received = 0, largest_received = 0;
  for (uint32_t i = 0; i < s.steps.size(); ++i) {
    const Step& st = s.steps[i];
    const std::string at = who + "step " + std::to_string(i) + ": ";
    if (st.dep_begin + static_cast<size_t>(st.dep_count) > s.deps.size()) return at + "dependency list out of range";
    for (uint32_t k = 0; k < st.dep_count; ++k)
      if (s.deps[st.dep_begin + k] >= i) return at + "depends on step " + std::to_string(s.deps[st.dep_begin + k]);
    auto in_bounds = [&](const BufferRange& r) -> std::string {
      static const char* kNames[] = {"send", "recv", "scratch"};
      const size_t limit = r.buffer == Buffer::kSend ? m.send_bytes
                           : r.buffer == Buffer::kRecv ? m.recv_bytes : s.scratch_bytes;
      if (st.bytes == 0 || r.offset + st.bytes <= limit) return "";
      return at + "bytes [" + std::to_string(r.offset) + ", " + std::to_string(r.offset + st.bytes) +
             ") of a " + std::to_string(limit) + "-byte " + kNames[static_cast<int>(r.buffer)] + " buffer";
    };
    std::string bad;
    if (st.kind == StepKind::kSend || st.kind == StepKind::kCopy || st.kind == StepKind::kReduce) bad += in_bounds(st.src);
    if (st.kind == StepKind::kReduce) bad += in_bounds(st.src2);
    if (st.kind != StepKind::kSend) bad += in_bounds(st.dst);
    if (!bad.empty()) return bad;
    if (st.kind != StepKind::kSend && st.kind != StepKind::kRecv) continue;
    if (c.collective != Collective::kBarrier) {
      if (st.bytes == 0 && c.count > 0) return at + "an empty message";
      if (c.count == 0 && !point_to_point(c.collective)) return at + "a message in an empty collective";
      if (st.bytes % elem != 0) return at + "a message of a partial element";
      if (chunked && st.bytes > chunk) return at + "a message larger than a chunk";
    } else if (st.bytes != 0) {
      return at + "a barrier message with data";
    }
    (st.kind == StepKind::kSend ? sent : received) += st.bytes;
    if (st.kind == StepKind::kRecv) largest_received = std::max(largest_received, st.bytes);
  }
  // Scratch: pipelines hold at most scratch_slots received chunks, never a slot larger
  // than a message; pairwise stages a whole in-place input; recursive doubling keeps
  // each round's message.
  const size_t n = static_cast<size_t>(c.nranks), block = c.count * elem;
  size_t scratch_cap = 0;
  if (algo == "pairwise") scratch_cap = block * n;
  else if (algo == "recursive_doubling") scratch_cap = received;
  else if (hierarchical) {
    // A region per kind of phase (fold, in-node, tail, across, ...), each a pipeline's
    // slots or, across the nodes by recursive doubling, every round's message; reduce-
    // scatter and all-gather stage the whole rank-ordered buffer.
    scratch_cap = 8 * static_cast<size_t>(c.scratch_slots) * largest_received + received;
    if (c.collective != Collective::kAllreduce) scratch_cap += n * block;
  } else if (chunked) scratch_cap = static_cast<size_t>(c.scratch_slots) * largest_received;
  if ((algo == "rabenseifner" || algo == "torus") && c.collective == Collective::kReduceScatter &&
      n > 1 && block > 0)
    scratch_cap += n * block;  // the partial sums of the whole input
  if (s.scratch_bytes > scratch_cap)
    return who + "scratch_bytes " + std::to_string(s.scratch_bytes) + " over " + std::to_string(scratch_cap);
  // Bytes on the wire: the bandwidth-optimal amounts.
  const size_t per_rank_total = (n - 1) * block;
  const int position = static_cast<int>((args.rank - c.root + c.nranks) % c.nranks);
  auto expect = [&](const char* what, size_t got, size_t lo, size_t hi) -> std::string {
    if (got >= lo && got <= hi) return "";
    return who + what + " " + std::to_string(got) + " B, want [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]";
  };
  std::string bad;
  switch (c.collective) {
    case Collective::kAllreduce: {
      size_t lo = 0, hi = 0;
      if (algo == "ring" && n > 1) {
        // 2(n-1)/n of the buffer: all segments but two, each count/n rounded either way.
        lo = 2 * block - 2 * ((c.count + n - 1) / n * elem);
        hi = 2 * block - 2 * (c.count / n * elem);
      } else if (algo == "recursive_doubling" && n > 1) {
        lo = hi = recursive_doubling_bytes(args.rank, c.nranks, block);
      } else if (algo == "rabenseifner" && n > 1 && block > 0) {
        // Halving then doubling among p = 2^k ranks: all blocks but its own, twice, within
        // one element per block where count/p does not divide evenly (the doubling sends
        // whole windows). A folded pair (ranks 2i, 2i+1 below 2(n-p)) trades the whole
        // buffer once more.
        size_t p = 1;
        while (p * 2 <= n) p *= 2;
        const size_t slack = p * elem;
        lo = 2 * (block - (c.count + p - 1) / p * elem);
        lo = lo > slack ? lo - slack : 0;
        hi = 2 * (block - c.count / p * elem) + slack;
        if (static_cast<size_t>(args.rank) < 2 * (n - p)) {
          if (args.rank % 2 == 0) lo = hi = 0;
          lo += block;
          hi += block;
        }
      } else if (algo == "torus" && n > 1) {
        // Rings along each dimension: about 2(n-1)/n of the buffer.
        // Uneven splits cost at most an element per segment and step.
        lo = block * (n - 1) / n;
        hi = 2 * block + 2 * n * elem;
      } else if (hierarchical && node_layout(args)) {
        // In the node the buffer about twice; across the nodes a slice (or the buffer, for
        // node leaders), by whichever algorithm: at most a slice per round, log2 of the
        // nodes rounds and two more; an extra rank of a larger node hands its buffer over,
        // and its partner sends the result back to each of its extras.
        std::map<int, size_t> sizes;
        for (int node : *node_layout(args)) ++sizes[node];
        size_t smallest = n, largest = 0, rounds = 2;
        for (const auto& [node, size] : sizes) {
          smallest = std::min(smallest, size);
          largest = std::max(largest, size);
        }
        while ((size_t{1} << rounds) < 4 * sizes.size()) ++rounds;
        const size_t extras = (largest - smallest + smallest - 1) / smallest;
        lo = 0;
        hi = (2 + rounds + extras) * (block + n * elem);
      } else if (algo == "tree" && n > 1) {
        // Each half goes up once and down to at most two children in its tree; every
        // rank is below some root in at least one tree.
        lo = c.count / 2 * elem;
        hi = 4 * ((c.count + 1) / 2 * elem);
      }
      bad = expect("sends", sent, lo, hi) + expect("receives", received, lo, hi);
      break;
    }
    case Collective::kAllgather: case Collective::kReduceScatter: case Collective::kAlltoall:
      if ((algo == "rabenseifner" && n > 1 && (n & (n - 1)) != 0) ||
          (hierarchical && algo.find("rabenseifner") != std::string::npos)) {
        // Folded in: the even rank of a pair hands over its whole input (reduce-scatter)
        // or gets everything back (all-gather) through its odd neighbour, and the
        // virtual ranks' blocks are one or two ranks' blocks.
        bad = expect("sends", sent, 0, 3 * n * block) + expect("receives", received, 0, 3 * n * block);
        break;
      }
      bad = expect("sends", sent, per_rank_total, per_rank_total) +
            expect("receives", received, per_rank_total, per_rank_total);
      break;
    case Collective::kBroadcast: {
      const size_t in = position != 0 ? block : 0;
      if (algo == "tree") {  // the root sends each half once; others to <= 2 children per half
        const bool root = position == 0;
        const size_t hi = n == 1 ? 0 : root ? block : 4 * ((c.count + 1) / 2 * elem);
        bad = expect("sends", sent, root ? hi : 0, hi) + expect("receives", received, in, in);
        break;
      }
      const size_t out = n > 1 && position != c.nranks - 1 ? block : 0;
      bad = expect("sends", sent, out, out) + expect("receives", received, in, in);
      break;
    }
    case Collective::kReduce: {
      const size_t out = n > 1 && position != 0 ? block : 0;
      if (algo == "tree") {
        const bool root = position == 0;
        const size_t hi = n == 1 ? 0 : root ? block : 4 * ((c.count + 1) / 2 * elem);
        bad = expect("sends", sent, out, out) + expect("receives", received, root ? hi : 0, hi);
        break;
      }
      const size_t in = n > 1 && position != 1 % c.nranks ? block : 0;  // the chain starts at root+1
      bad = expect("sends", sent, out, out) + expect("receives", received, in, in);
      break;
    }
    default: break;
  }
  if (!bad.empty()) return bad;
  Status hazards = check_hazards(s, m.aliasing);
  if (!hazards.ok()) return hazards.message();
  return "";
}

inline std::string first_difference(const char* got, const std::vector<char>& want, size_t elem) {
  for (size_t b = 0; b < want.size(); ++b) {
    if (got[b] == want[b]) continue;
    return "element " + std::to_string(b / elem) + " (byte " + std::to_string(b) + ") differs";
  }
  return "";
}

// Each rank's knowledge of the others (who has been heard from, directly or through a
// chain of messages) after its last step; a barrier must end with all of it everywhere.
inline std::string check_everyone_heard(const std::vector<Schedule>& schedules) {
  const int n = static_cast<int>(schedules.size());
  const size_t words = (static_cast<size_t>(n) + 63) / 64;
  std::vector<std::vector<uint64_t>> known(static_cast<size_t>(n));
  std::map<std::pair<int, int>, std::vector<uint32_t>> sends;  // (from, to) -> steps
  std::vector<std::vector<std::pair<int, uint32_t>>> match(static_cast<size_t>(n));  // recv -> send
  for (int r = 0; r < n; ++r) {
    known[r].assign(schedules[r].steps.size() * words, 0);
    for (uint32_t i = 0; i < schedules[r].steps.size(); ++i)
      if (schedules[r].steps[i].kind == StepKind::kSend) sends[{r, schedules[r].steps[i].peer}].push_back(i);
  }
  for (int r = 0; r < n; ++r) {
    std::map<int, size_t> nth;
    match[r].assign(schedules[r].steps.size(), {-1, 0});
    for (uint32_t i = 0; i < schedules[r].steps.size(); ++i) {
      const Step& st = schedules[r].steps[i];
      if (st.kind == StepKind::kRecv) match[r][i] = {st.peer, sends[{st.peer, r}].at(nth[st.peer]++)};
    }
  }
  for (bool changed = true; changed;) {
    changed = false;
    for (int r = 0; r < n; ++r) {
      const Schedule& s = schedules[r];
      for (uint32_t i = 0; i < s.steps.size(); ++i) {
        std::vector<uint64_t> k(words, 0);
        k[r / 64] |= uint64_t{1} << (r % 64);
        for (uint32_t d = 0; d < s.steps[i].dep_count; ++d)
          for (size_t w = 0; w < words; ++w) k[w] |= known[r][s.deps[s.steps[i].dep_begin + d] * words + w];
        if (match[r][i].first >= 0)
          for (size_t w = 0; w < words; ++w) k[w] |= known[match[r][i].first][match[r][i].second * words + w];
        for (size_t w = 0; w < words; ++w) {
          if ((known[r][i * words + w] | k[w]) == known[r][i * words + w]) continue;
          known[r][i * words + w] |= k[w];
          changed = true;
        }
      }
    }
  }
  for (int r = 0; r < n; ++r) {
    std::vector<uint64_t> all(words, 0);
    all[r / 64] |= uint64_t{1} << (r % 64);
    for (size_t i = 0; i < schedules[r].steps.size(); ++i)
      for (size_t w = 0; w < words; ++w) all[w] |= known[r][i * words + w];
    for (int p = 0; p < n; ++p)
      if (!((all[p / 64] >> (p % 64)) & 1)) return rank_text(r) + " can finish before hearing from " + rank_text(p);
  }
  return "";
}

// Builds, checks, simulates and compares one case; "" when everything holds.
inline std::string run_case(const Case& c) {
  const int n = c.nranks;
  std::vector<Schedule> schedules(static_cast<size_t>(n));
  std::vector<RankMemory> memory(static_cast<size_t>(n));
  std::vector<Buffers> buffers(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    CollectiveArgs a;
    a.collective = c.collective;
    a.rank = r;
    a.nranks = n;
    a.count = c.count;
    a.datatype = c.datatype;
    a.op = c.op;
    a.root = c.root;
    a.in_place = in_place_for(c, r);
    a.in_place_mpi = a.in_place && c.placement == Placement::kInPlaceMpi;
    a.chunk_bytes = c.chunk_bytes;
    a.scratch_slots = c.scratch_slots;
    a.node_of_rank = c.node_of_rank;
    Schedule& s = schedules[r];
    if (point_to_point(c.collective)) {
      a.peer = p2p_partner(r, n);
      a.collective = r % 2 == 0 ? Collective::kSend : Collective::kRecv;
    }
    if (point_to_point(c.collective) && a.peer < 0) {
      s = Schedule{};  // sits this exchange out
      s.rank = r;
      s.nranks = n;
      s.datatype = c.datatype;
    } else {
      Status st = build_schedule(a, c.algorithm, &s);
      if (!st.ok()) return rank_text(r) + ": build_schedule: " + st.message();
    }
    Case as_built = c;
    as_built.collective = a.collective;
    prepare_memory(as_built, r, a, &memory[r]);
    std::string bad = check_properties(as_built, a, s, memory[r]);
    if (!bad.empty()) return bad;
    allocate(&memory[r].scratch, s.scratch_bytes);
    memory[r].buffers.scratch = s.scratch_bytes > 0 ? memory[r].scratch.data() : nullptr;
    buffers[r] = memory[r].buffers;
  }
  Status st = simulate_dataflow(schedules, buffers, SimulateOptions{c.order_seed});
  if (!st.ok()) return "simulate_dataflow: " + st.message();
  if (c.collective == Collective::kBarrier) return check_everyone_heard(schedules);
  const size_t elem = reduce::datatype_size(c.datatype);
  std::vector<char> shared_want;
  for (int r = 0; r < n; ++r) {
    const RankMemory& m = memory[r];
    Case as_built = c;
    if (point_to_point(c.collective)) as_built.collective = r % 2 == 0 ? Collective::kSend : Collective::kRecv;
    // All-reduce and broadcast promise every rank the same bytes: reckon them once (the
    // reference is O(ranks) per element, which adds up at thousands of ranks).
    const bool same_everywhere = c.collective == Collective::kAllreduce || c.collective == Collective::kBroadcast;
    if (!same_everywhere || r == 0) shared_want = expected_output(as_built, r);
    const std::vector<char>& want = shared_want;
    const char* got = static_cast<const char*>(m.buffers.recv);
    std::string diff = want.empty() ? "" : first_difference(got, want, elem);
    if (!diff.empty()) return rank_text(r) + " result: " + diff;
    if (!guard_intact(m.send, m.send_bytes) || !guard_intact(m.recv, m.recv_bytes) ||
        !guard_intact(m.scratch, schedules[r].scratch_bytes))
      return rank_text(r) + ": a write past the end of a buffer";
  }
  return "";
}

// The placements a collective's schedules are checked in.
inline std::vector<Placement> placements(Collective c) {
  switch (c) {
    case Collective::kReduceScatter:
      return {Placement::kOutOfPlace, Placement::kInPlace, Placement::kInPlaceMpi, Placement::kMixed};
    case Collective::kAllreduce: case Collective::kAllgather: case Collective::kReduce:
    case Collective::kAlltoall: case Collective::kBroadcast:
      return {Placement::kOutOfPlace, Placement::kInPlace, Placement::kMixed};
    default: return {Placement::kOutOfPlace};
  }
}

// bfloat16 holds integers exactly only up to 256: keep its sums (5 per rank at most)
// and products there, so every summation order gives the reference's result. The 8-bit
// floats: sums of inputs in {-1, 0, 1} are exact up to 8 ranks (e5m2) or 16 (e4m3),
// products (a 2 from every third rank) up to 2^8 (e4m3's largest power of two below 448).
inline bool exact(ciuic_datatype_t t, ciuic_op_t op, int n) {
  switch (t) {
    case CIUIC_BFLOAT16: return op == CIUIC_PROD ? n <= 24 : n <= 48;
    case CIUIC_FLOAT8_E4M3: return op == CIUIC_PROD ? n <= 24 : n <= 16;
    case CIUIC_FLOAT8_E5M2: return op == CIUIC_PROD ? n <= 45 : n <= 8;
    default: return true;
  }
}

// Runs cases, reporting the first few failures with the case that failed.
class Sweep {
 public:
  void run(const Case& c) {
    ++cases_;
    const std::string bad = run_case(c);
    if (bad.empty()) return;
    if (++failures_ <= 5) ADD_FAILURE() << c.describe() << ": " << bad;
  }
  ~Sweep() {
    EXPECT_EQ(failures_, 0) << "of " << cases_ << " cases";
    EXPECT_GT(cases_, 0);
  }

 private:
  int cases_ = 0;
  int failures_ = 0;
};

}  // namespace ciuic::coll::schedule_testing
