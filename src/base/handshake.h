// The authenticated opening of every ciuic connection (bootstrap store, TCP transport).
//
// Both sides know a 128-bit key (the job secret, or a listener's token carried in its
// handle). Neither sends it: each proves knowledge with a SipHash-2-4 MAC over both
// sides' fresh nonces and its payload. Fixed binary frames, bounded lengths:
//
//   server -> client  Challenge {u32 magic, u16 version, u16 zero, u8 server_nonce[16]}
//   client -> server  Response  {u32 magic, u16 version, u16 payload_len, u8 client_nonce[16],
//                                u64 mac("client", snonce, cnonce, payload), payload}
//   server -> client  Verdict   {u32 magic, u16 verdict, u16 payload_len,
//                                u64 mac("server", cnonce, snonce, payload), payload}
//
// A verdict other than kAccepted carries no MAC and tells the client why it was refused.
// The state machine is non-blocking: call progress() whenever the socket is ready; it
// never waits, so a slow or hostile peer cannot hold up anyone else.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/status.h"

namespace ciuic {

using Key128 = std::array<uint8_t, 16>;

uint64_t siphash24(const Key128& key, const void* data, size_t size);

class Handshake {
 public:
  enum class Role { kServer, kClient };
  enum Verdict : uint16_t {
    kAccepted = 0,
    kBadMagic = 1,
    kBadVersion = 2,
    kBadProof = 3,   // the peer does not know the key
    kRefused = 4,    // authenticated, but the server's application said no (payload says why)
  };
  static constexpr size_t kMaxPayload = 256;

  // `payload` is what this side sends (<= kMaxPayload). The server decides whether to
  // accept an authenticated client's payload through `accept_payload` (see below).
  Handshake(int fd, Role role, uint32_t magic, uint16_t version, const Key128& key,
            std::vector<uint8_t> payload, Deadline deadline, std::string peer_description);

  // Advances as far as the socket allows. *done = true once finished successfully; an
  // error Status says why it failed (bad secret, version, magic, closed, timeout).
  Status progress(bool* done);
  // The poll() events the state machine waits for now.
  short wanted_events() const;

  // Server side: after the client's Response is verified, the server may examine the
  // payload and refuse (e.g. duplicate rank) by setting a refusal before the next
  // progress(): progress() returns with *done=false and awaiting_decision() true.
  bool awaiting_decision() const { return state_ == State::kDecide; }
  void accept(std::vector<uint8_t> reply_payload);
  void refuse(std::string reason);

  const std::vector<uint8_t>& peer_payload() const { return peer_payload_; }

 private:
  enum class State { kSendChallenge, kReadChallenge, kSendResponse, kReadResponse, kDecide,
                     kSendVerdict, kReadVerdict, kDone, kFailed };
  Status flush(bool* drained);
  Status fill(size_t want, bool* complete);
  uint64_t mac(const char* label, const uint8_t* first, const uint8_t* second,
               const std::vector<uint8_t>& payload) const;
  Status fail(Status s);

  int fd_;
  Role role_;
  uint32_t magic_;
  uint16_t version_;
  Key128 key_;
  std::vector<uint8_t> my_payload_;
  std::vector<uint8_t> peer_payload_;
  Deadline deadline_;
  std::string peer_;
  State state_;
  uint8_t my_nonce_[16];
  uint8_t peer_nonce_[16] = {};
  std::vector<uint8_t> out_;
  size_t out_done_ = 0;
  std::vector<uint8_t> in_;
  size_t in_done_ = 0;
  Status refusal_;
};

}  // namespace ciuic
