// A rank's side of the bootstrap store. Runs on the user's thread during init, so it may
// block in poll(), always bounded by the caller's deadline.
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"

namespace ciuic::core {
namespace {

// How long a rank waits past its own deadline for the root's verdict on the allgather
// (the root times the request out at the same deadline and says who is missing).
constexpr int64_t kReplyGraceMs = 500;
constexpr int kRetryFirstMs = 10;
constexpr int kRetryMaxMs = 200;
constexpr int kPollCapMs = 1000;

// The time left, rounded up, for messages that quote the caller's budget.
int64_t budget_ms(Deadline deadline) {
  if (deadline.is_never()) return deadline.remaining_ms();
  return std::chrono::ceil<std::chrono::milliseconds>(deadline.at() - Clock::now()).count();
}

Status send_all(int fd, const uint8_t* data, size_t size, Deadline deadline) {
  return net::send_all(fd, data, size, deadline, kPollCapMs, "sending to the root");
}

// Ok with *complete=false when the deadline passed first.
Status recv_all(int fd, uint8_t* data, size_t size, Deadline deadline, bool* complete) {
  size_t done = 0;
  *complete = false;
  while (done < size) {
    size_t moved = 0;
    CIUIC_RETURN_IF_ERROR(net::recv_some(fd, data + done, size - done, &moved));
    done += moved;
    if (done == size) break;
    if (deadline.expired()) return Status::Ok();
    bool ready = false;
    CIUIC_RETURN_IF_ERROR(net::wait_fd(fd, POLLIN, deadline.poll_timeout_ms(kPollCapMs), &ready));
  }
  *complete = true;
  return Status::Ok();
}

class StoreClientImpl final : public StoreClient {
 public:
  StoreClientImpl(net::Fd fd, std::string root, std::string name_space, int rank, int nranks)
      : fd_(std::move(fd)),
        root_(std::move(root)),
        name_space_(std::move(name_space)),
        rank_(rank),
        nranks_(nranks) {}

  Status allgather(std::string_view tag, const std::vector<uint8_t>& mine,
                   std::vector<std::vector<uint8_t>>* all, Deadline deadline) override;
  int rank() const override { return rank_; }
  int nranks() const override { return nranks_; }

 private:
  Status exchange(std::string_view tag, const std::vector<uint8_t>& mine,
                  std::vector<std::vector<uint8_t>>* all, Deadline deadline);

  net::Fd fd_;
  std::string root_;
  std::string name_space_;
  int rank_;
  int nranks_;
  Status broken_;  // sticky: once the stream is out of step, every later call fails the same way
};

Status StoreClientImpl::allgather(std::string_view tag, const std::vector<uint8_t>& mine,
                                  std::vector<std::vector<uint8_t>>* all, Deadline deadline) {
  if (!broken_.ok()) return broken_;
  std::string context = "allgather '" + std::string(tag) + "' in namespace '" + name_space_ +
                        "' (rank " + std::to_string(rank_) + " of " + std::to_string(nranks_) +
                        ")";
  if (tag.size() > store::kMaxTagBytes)
    return invalid_argument(context + ": tag longer than " + std::to_string(store::kMaxTagBytes) +
                            " bytes");
  if (mine.size() > store::kMaxValueBytes)
    return invalid_argument(context + ": value of " + std::to_string(mine.size()) +
                            " bytes exceeds the 16 MiB limit");
  return exchange(tag, mine, all, deadline).prefix(context);
}

Status StoreClientImpl::exchange(std::string_view tag, const std::vector<uint8_t>& mine,
                                 std::vector<std::vector<uint8_t>>* all, Deadline deadline) {
  const int64_t budget = budget_ms(deadline);
  store::RequestHeader request;
  request.tag_len = static_cast<uint16_t>(tag.size());
  request.value_len = static_cast<uint32_t>(mine.size());
  request.wait_ms = deadline.is_never()
                        ? store::kWaitForever
                        : static_cast<uint32_t>(std::min<int64_t>(budget, store::kWaitForever - 1));
  std::vector<uint8_t> head(store::kRequestHeaderBytes);
  store::encode_request_header(request, head.data());
  head.insert(head.end(), tag.begin(), tag.end());
  Status s = send_all(fd_.get(), head.data(), head.size(), deadline);
  if (s.ok()) s = send_all(fd_.get(), mine.data(), mine.size(), deadline);
  if (!s.ok()) {
    broken_ = Status(s.code(), "lost the connection to the bootstrap root at " + root_ + ": " +
                                   s.message());
    return broken_;
  }

  Deadline reply_deadline =
      deadline.is_never() ? deadline : Deadline::after_ms(deadline.remaining_ms() + kReplyGraceMs);
  uint8_t header_bytes[store::kReplyHeaderBytes];
  bool complete = false;
  s = recv_all(fd_.get(), header_bytes, sizeof(header_bytes), reply_deadline, &complete);
  if (s.ok() && !complete) {
    broken_ = timeout_error("not all ranks arrived within " + std::to_string(budget) +
                            " ms and the bootstrap root at " + root_ +
                            " did not answer: check that every rank is running and reached "
                            "this point");
    return broken_;
  }
  if (!s.ok()) {
    broken_ = Status(s.code(), "the bootstrap root at " + root_ + " went away: " + s.message());
    return broken_;
  }
  store::ReplyHeader h = store::decode_reply_header(header_bytes);
  uint64_t limit = h.tag_len + (h.status == store::kOk
                                    ? uint64_t{h.count} * (4 + store::kMaxValueBytes)
                                    : store::kMaxErrorBytes);
  if (h.magic != store::kReplyMagic || h.tag_len != tag.size() || h.body_len > limit ||
      h.body_len < h.tag_len || (h.status == store::kOk && h.count != uint32_t(nranks_))) {
    broken_ = internal_error("malformed reply from the bootstrap root at " + root_);
    return broken_;
  }
  std::vector<uint8_t> body(h.body_len);
  s = recv_all(fd_.get(), body.data(), body.size(), reply_deadline, &complete);
  if (s.ok() && !complete) s = timeout_error("the reply did not arrive in full");
  if (!s.ok()) {
    broken_ = Status(s.code(), "reading the reply from the bootstrap root at " + root_ + ": " +
                                   s.message());
    return broken_;
  }
  if (!std::equal(tag.begin(), tag.end(), body.begin())) {
    broken_ = internal_error("the bootstrap root at " + root_ + " answered a different tag");
    return broken_;
  }
  const uint8_t* p = body.data() + h.tag_len;
  const uint8_t* end = body.data() + body.size();
  if (h.status != store::kOk) {
    std::string message(p, end);
    if (h.status == store::kTimeout) return timeout_error(message);
    if (h.status == store::kPeerLeft) return remote_error(message);
    return invalid_argument(message);
  }
  std::vector<std::vector<uint8_t>> values(static_cast<size_t>(nranks_));
  for (auto& v : values) {
    if (end - p < 4) break;
    uint32_t len = store::get_u32(p);
    p += 4;
    if (static_cast<uint64_t>(end - p) < len) {
      p = end + 1;  // marks the reply as short
      break;
    }
    v.assign(p, p + len);
    p += len;
  }
  if (p != end) {
    broken_ = internal_error("malformed values in the reply from the bootstrap root at " + root_);
    return broken_;
  }
  *all = std::move(values);
  return Status::Ok();
}

// One attempt: TCP connect, then the handshake. *retry says whether failing is worth
// another attempt (the root is not up yet, or dropped us before deciding).
Status connect_once(const UniqueId& id, const std::vector<uint8_t>& join, Deadline deadline,
                    net::Fd* out, bool* retry) {
  *retry = true;
  net::Fd fd;
  CIUIC_RETURN_IF_ERROR(net::connect_start(id.root, &fd));
  for (;;) {
    bool ready = false;
    CIUIC_RETURN_IF_ERROR(
        net::wait_fd(fd.get(), POLLOUT, deadline.poll_timeout_ms(kPollCapMs), &ready));
    if (ready) break;
    if (deadline.expired()) return timeout_error("the TCP connection did not complete");
  }
  CIUIC_RETURN_IF_ERROR(net::connect_finished(fd.get(), id.root));
  Handshake handshake(fd.get(), Handshake::Role::kClient, kBootstrapMagic, kBootstrapVersion,
                      id.secret, join, deadline, "the bootstrap root at " + id.root.to_string());
  for (;;) {
    bool done = false;
    Status s = handshake.progress(&done);
    if (!s.ok()) {
      // Closed before a verdict: the root may have shed us under load; anything else
      // (refusal, wrong secret, version) is final.
      *retry = s.code() == CIUIC_ERR_REMOTE;
      return s;
    }
    if (done) break;
    bool ready = false;
    CIUIC_RETURN_IF_ERROR(net::wait_fd(fd.get(), handshake.wanted_events(),
                                       deadline.poll_timeout_ms(kPollCapMs), &ready));
  }
  *out = std::move(fd);
  return Status::Ok();
}

}  // namespace

Status StoreClient::connect(const UniqueId& id, std::string_view name_space, int rank, int nranks,
                            Deadline deadline, std::unique_ptr<StoreClient>* out) {
  const std::string root = id.root.to_string();
  if (name_space.size() > store::kMaxNamespaceBytes)
    return invalid_argument("bootstrap namespace '" + std::string(name_space) + "' is longer than " +
                            std::to_string(store::kMaxNamespaceBytes) + " bytes");
  if (nranks < 1 || nranks > store::kMaxRanks || rank < 0 || rank >= nranks)
    return invalid_argument("rank " + std::to_string(rank) + " of " + std::to_string(nranks) +
                            " is out of range");
  const std::vector<uint8_t> join = store::encode_join({std::string(name_space), rank, nranks});
  const int64_t budget = budget_ms(deadline);
  int backoff_ms = kRetryFirstMs;
  Status last;
  for (int attempt = 1;; ++attempt) {
    net::Fd fd;
    bool retry = false;
    Status s = connect_once(id, join, deadline, &fd, &retry);
    if (s.ok()) {
      CIUIC_LOG_INFO(log::kBoot, "rank %d of %d joined namespace '%s' at the bootstrap root %s "
                     "(attempt %d)", rank, nranks, std::string(name_space).c_str(), root.c_str(),
                     attempt);
      *out = std::make_unique<StoreClientImpl>(std::move(fd), root, std::string(name_space), rank,
                                               nranks);
      return Status::Ok();
    }
    if (!retry && s.code() != CIUIC_ERR_TIMEOUT)
      return s.prefix("rank " + std::to_string(rank) + " joining namespace '" +
                      std::string(name_space) + "'");
    last = s;
    if (deadline.expired() || s.code() == CIUIC_ERR_TIMEOUT) break;
    CIUIC_LOG_TRACE(log::kBoot, "bootstrap root %s not ready (%s); retrying in %d ms",
                    root.c_str(), s.message().c_str(), backoff_ms);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min<int64_t>(backoff_ms, deadline.remaining_ms())));
    backoff_ms = std::min(backoff_ms * 2, kRetryMaxMs);
  }
  return timeout_error("cannot reach the bootstrap root at " + root + " within " +
                       std::to_string(budget) +
                       " ms: is rank 0 running and reachable? (CIUIC_ROOT / MASTER_ADDR); last "
                       "error: " + last.message());
}

}  // namespace ciuic::core
