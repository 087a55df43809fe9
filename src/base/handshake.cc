#include "base/handshake.h"

#include <poll.h>

#include <cstring>

#include "base/net.h"

namespace ciuic {
namespace {

constexpr size_t kChallengeBytes = 24;
constexpr size_t kResponseHeaderBytes = 32;
constexpr size_t kVerdictHeaderBytes = 16;

void put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x));
  v.push_back(static_cast<uint8_t>(x >> 8));
}
void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int i = 0; i < 4; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void put64(std::vector<uint8_t>& v, uint64_t x) {
  for (int i = 0; i < 8; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) {
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i) x |= static_cast<uint32_t>(p[i]) << (8 * i);
  return x;
}
uint64_t get64(const uint8_t* p) {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(p[i]) << (8 * i);
  return x;
}

uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

const char* verdict_text(uint16_t v) {
  switch (v) {
    case Handshake::kBadMagic: return "it did not recognise our protocol (bad magic)";
    case Handshake::kBadVersion: return "protocol version mismatch";
    case Handshake::kBadProof: return "secret mismatch: this process is not part of the job";
    case Handshake::kRefused: return "refused";
    default: return "unknown verdict";
  }
}

}  // namespace

uint64_t siphash24(const Key128& key, const void* data, size_t size) {
  uint64_t k0 = get64(key.data());
  uint64_t k1 = get64(key.data() + 8);
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  auto round = [&] {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  };
  const auto* p = static_cast<const uint8_t*>(data);
  size_t blocks = size / 8;
  for (size_t i = 0; i < blocks; ++i) {
    uint64_t m = get64(p + 8 * i);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(size) << 56;
  for (size_t i = 0; i < size % 8; ++i) last |= static_cast<uint64_t>(p[8 * blocks + i]) << (8 * i);
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

Handshake::Handshake(int fd, Role role, uint32_t magic, uint16_t version, const Key128& key,
                     std::vector<uint8_t> payload, Deadline deadline, std::string peer_description)
    : fd_(fd),
      role_(role),
      magic_(magic),
      version_(version),
      key_(key),
      my_payload_(std::move(payload)),
      deadline_(deadline),
      peer_(std::move(peer_description)),
      state_(role == Role::kServer ? State::kSendChallenge : State::kReadChallenge) {
  if (my_payload_.size() > kMaxPayload) my_payload_.resize(kMaxPayload);
  net::random_bytes(my_nonce_, sizeof(my_nonce_));
  if (role_ == Role::kServer) {
    put32(out_, magic_);
    put16(out_, version_);
    put16(out_, 0);
    out_.insert(out_.end(), my_nonce_, my_nonce_ + 16);
  }
}

uint64_t Handshake::mac(const char* label, const uint8_t* first, const uint8_t* second,
                        const std::vector<uint8_t>& payload) const {
  std::vector<uint8_t> msg(label, label + std::strlen(label));
  put32(msg, magic_);
  put16(msg, version_);
  msg.insert(msg.end(), first, first + 16);
  msg.insert(msg.end(), second, second + 16);
  msg.insert(msg.end(), payload.begin(), payload.end());
  return siphash24(key_, msg.data(), msg.size());
}

Status Handshake::fail(Status s) {
  state_ = State::kFailed;
  return s.prefix("handshake with " + peer_);
}

Status Handshake::flush(bool* drained) {
  size_t done = 0;
  Status s = net::send_some(fd_, out_.data() + out_done_, out_.size() - out_done_, &done);
  out_done_ += done;
  *drained = out_done_ == out_.size();
  if (*drained) {
    out_.clear();
    out_done_ = 0;
  }
  return s;
}

Status Handshake::fill(size_t want, bool* complete) {
  if (in_.size() < want) in_.resize(want);
  size_t done = 0;
  Status s = net::recv_some(fd_, in_.data() + in_done_, want - in_done_, &done);
  in_done_ += done;
  *complete = in_done_ == want;
  return s;
}

short Handshake::wanted_events() const {
  switch (state_) {
    case State::kSendChallenge:
    case State::kSendResponse:
    case State::kSendVerdict: return POLLOUT;
    case State::kReadChallenge:
    case State::kReadResponse:
    case State::kReadVerdict: return POLLIN;
    default: return 0;
  }
}

void Handshake::accept(std::vector<uint8_t> reply_payload) {
  if (state_ != State::kDecide) return;
  if (reply_payload.size() > kMaxPayload) reply_payload.resize(kMaxPayload);
  my_payload_ = std::move(reply_payload);
  out_.clear();
  put32(out_, magic_);
  put16(out_, kAccepted);
  put16(out_, static_cast<uint16_t>(my_payload_.size()));
  put64(out_, mac("server", peer_nonce_, my_nonce_, my_payload_));
  out_.insert(out_.end(), my_payload_.begin(), my_payload_.end());
  state_ = State::kSendVerdict;
}

void Handshake::refuse(std::string reason) {
  if (state_ != State::kDecide) return;
  if (reason.size() > kMaxPayload) reason.resize(kMaxPayload);
  out_.clear();
  put32(out_, magic_);
  put16(out_, kRefused);
  put16(out_, static_cast<uint16_t>(reason.size()));
  put64(out_, 0);
  out_.insert(out_.end(), reason.begin(), reason.end());
  refusal_ = invalid_argument("refused: " + reason);
  state_ = State::kSendVerdict;
}

Status Handshake::progress(bool* done) {
  *done = false;
  for (;;) {
    if (state_ == State::kDone) {
      *done = true;
      return Status::Ok();
    }
    if (state_ == State::kFailed) return fail(internal_error("progress() after failure"));
    if (state_ == State::kDecide) return Status::Ok();
    if (deadline_.expired())
      return fail(timeout_error("no complete handshake before the deadline (slow or silent peer)"));
    bool complete = false;
    switch (state_) {
      case State::kSendChallenge: {
        Status s = flush(&complete);
        if (!s.ok()) return fail(s);
        if (!complete) return Status::Ok();
        in_.clear();
        in_done_ = 0;
        state_ = State::kReadResponse;
        break;
      }
      case State::kReadChallenge: {
        Status s = fill(kChallengeBytes, &complete);
        if (!s.ok()) return fail(s);
        if (!complete) return Status::Ok();
        if (get32(in_.data()) != magic_)
          return fail(invalid_argument("the server is not a ciuic endpoint of this kind (bad magic)"));
        uint16_t v = get16(in_.data() + 4);
        if (v != version_)
          return fail(invalid_argument("protocol version mismatch: server speaks " +
                                       std::to_string(v) + ", we speak " + std::to_string(version_)));
        std::memcpy(peer_nonce_, in_.data() + 8, 16);
        put32(out_, magic_);
        put16(out_, version_);
        put16(out_, static_cast<uint16_t>(my_payload_.size()));
        out_.insert(out_.end(), my_nonce_, my_nonce_ + 16);
        put64(out_, mac("client", peer_nonce_, my_nonce_, my_payload_));
        out_.insert(out_.end(), my_payload_.begin(), my_payload_.end());
        state_ = State::kSendResponse;
        break;
      }
      case State::kSendResponse: {
        Status s = flush(&complete);
        if (!s.ok()) return fail(s);
        if (!complete) return Status::Ok();
        in_.clear();
        in_done_ = 0;
        state_ = State::kReadVerdict;
        break;
      }
      case State::kReadResponse: {
        Status s = fill(kResponseHeaderBytes, &complete);
        if (!s.ok()) return fail(s);
        if (!complete) return Status::Ok();
        uint16_t verdict = kAccepted;
        uint16_t len = get16(in_.data() + 6);
        if (get32(in_.data()) != magic_) verdict = kBadMagic;
        else if (get16(in_.data() + 4) != version_) verdict = kBadVersion;
        else if (len > kMaxPayload) verdict = kBadMagic;
        if (verdict == kAccepted && len > 0) {
          s = fill(kResponseHeaderBytes + len, &complete);
          if (!s.ok()) return fail(s);
          if (!complete) return Status::Ok();
        }
        if (verdict == kAccepted) {
          std::memcpy(peer_nonce_, in_.data() + 8, 16);
          peer_payload_.assign(in_.begin() + kResponseHeaderBytes,
                               in_.begin() + kResponseHeaderBytes + len);
          if (get64(in_.data() + 24) != mac("client", my_nonce_, peer_nonce_, peer_payload_))
            verdict = kBadProof;
        }
        if (verdict != kAccepted) {
          out_.clear();
          put32(out_, magic_);
          put16(out_, verdict);
          put16(out_, 0);
          put64(out_, 0);
          // Best effort: tell the client why, then give up on it.
          size_t ignored = 0;
          (void)net::send_some(fd_, out_.data(), out_.size(), &ignored);
          return fail(invalid_argument(std::string("refused the connection: ") +
                                       verdict_text(verdict)));
        }
        state_ = State::kDecide;
        return Status::Ok();
      }
      case State::kSendVerdict: {
        Status s = flush(&complete);
        if (!s.ok()) return fail(s);
        if (!complete) return Status::Ok();
        if (!refusal_.ok()) {
          state_ = State::kFailed;
          return refusal_.prefix("handshake with " + peer_);
        }
        state_ = State::kDone;
        break;
      }
      case State::kReadVerdict: {
        Status s = fill(kVerdictHeaderBytes, &complete);
        if (!s.ok()) return fail(s.code() == CIUIC_ERR_REMOTE
                                     ? remote_error("the server closed the connection before "
                                                    "answering (wrong secret or not a ciuic peer?)")
                                     : s);
        if (!complete) return Status::Ok();
        if (get32(in_.data()) != magic_) return fail(invalid_argument("bad magic in the verdict"));
        uint16_t verdict = get16(in_.data() + 4);
        uint16_t len = get16(in_.data() + 6);
        if (len > kMaxPayload) return fail(invalid_argument("oversized verdict payload"));
        if (len > 0) {
          s = fill(kVerdictHeaderBytes + len, &complete);
          if (!s.ok()) return fail(s);
          if (!complete) return Status::Ok();
        }
        std::vector<uint8_t> payload(in_.begin() + kVerdictHeaderBytes,
                                     in_.begin() + kVerdictHeaderBytes + len);
        if (verdict == kRefused)
          return fail(invalid_argument("the server refused us: " +
                                       std::string(payload.begin(), payload.end())));
        if (verdict != kAccepted)
          return fail(invalid_argument(std::string("the server refused us: ") +
                                       verdict_text(verdict)));
        if (get64(in_.data() + 8) != mac("server", my_nonce_, peer_nonce_, payload))
          return fail(invalid_argument(
              "the server could not prove it knows the secret: not the peer we expected"));
        peer_payload_ = std::move(payload);
        state_ = State::kDone;
        break;
      }
      default: return fail(internal_error("bad handshake state"));
    }
  }
}

}  // namespace ciuic
