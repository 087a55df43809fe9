// Recursive doubling all-reduce for small messages: log2(n) rounds in which every rank
// exchanges its whole partial result with the rank whose number differs in one bit —
// latency-optimal where the ring's 2(n-1) steps cost more than its bandwidth saves.
// Non-power-of-two n: the first 2*rem ranks pair up, one of each pair hands its data to
// the other and waits for the result (rem = n - largest power of two <= n).
#include "coll/algorithms.h"
#include "coll/builder.h"
#include "reduce/reduce.h"

namespace ciuic::coll {

Status build_recursive_doubling_allreduce(const CollectiveArgs& a, Schedule* s) {
  const size_t bytes = a.count * reduce::datatype_size(a.datatype);
  const int n = a.nranks, r = a.rank;
  std::vector<uint32_t> last;  // the steps that produced recvbuf's current value
  if (!a.in_place && bytes > 0)
    last.push_back(s->add(copy_step(at(Buffer::kRecv, 0), at(Buffer::kSend, 0), bytes)));
  if (n == 1 || bytes == 0) return Status::Ok();
  int pow2 = 1;
  while (pow2 * 2 <= n) pow2 *= 2;
  const int rem = n - pow2;
  // Ranks below 2*rem pair up: the even one of each pair sits the rounds out.
  if (r < 2 * rem && r % 2 == 0) {
    // The result lands where the send reads from: receive only once the send is done.
    const uint32_t sent = s->add(send_step(r + 1, at(Buffer::kRecv, 0), bytes), last);
    s->add(recv_step(r + 1, at(Buffer::kRecv, 0), bytes), {sent});
    return Status::Ok();
  }
  size_t scratch = 0;
  if (r < 2 * rem) {
    uint32_t got = s->add(recv_step(r - 1, at(Buffer::kScratch, scratch), bytes));
    last.push_back(got);
    last = {s->add(reduce_step(at(Buffer::kRecv, 0), at(Buffer::kRecv, 0), at(Buffer::kScratch, scratch), bytes), last)};
    scratch += bytes;
  }
  const int me = r < 2 * rem ? r / 2 : r - rem;
  auto real_rank = [&](int v) { return v < rem ? 2 * v + 1 : v + rem; };
  for (int mask = 1; mask < pow2; mask *= 2) {
    const int partner = real_rank(me ^ mask);
    uint32_t sent = s->add(send_step(partner, at(Buffer::kRecv, 0), bytes), last);
    uint32_t got = s->add(recv_step(partner, at(Buffer::kScratch, scratch), bytes));
    // The reduce overwrites what the send reads: it waits for both.
    last = {s->add(reduce_step(at(Buffer::kRecv, 0), at(Buffer::kRecv, 0), at(Buffer::kScratch, scratch), bytes),
                   {sent, got})};
    scratch += bytes;
  }
  if (a.op == CIUIC_AVG) last = {s->add(average_step(at(Buffer::kRecv, 0), bytes), last)};
  if (r < 2 * rem) s->add(send_step(r - 1, at(Buffer::kRecv, 0), bytes), last);
  s->scratch_bytes = scratch;
  return Status::Ok();
}

}  // namespace ciuic::coll
