// The TCP transport's wire format: the listener handle, the payload each stripe carries
// in its handshake, the frame header that precedes every message, and how a message's
// payload is split over the stripes. Everything is little-endian with fixed sizes.
//
//   handle   {u32 magic, u16 version, u16 zero, u8 address[20], u8 token[16]}      44 bytes
//   stripe   {u64 channel_id, u16 stripe_index, u16 stripe_count, u32 flags,
//             u64 min_stripe_bytes}                                                24 bytes
//   frame    {u32 marker|type, i32 tag, u64 size} on stripe 0 before each message, 16 bytes;
//            DATA: then `size` payload bytes split over the stripes (see StripeLayout);
//            ABORT: then `size` (<= 256) bytes of reason, on stripe 0 only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/handshake.h"
#include "base/le_bytes.h"
#include "base/net.h"
#include "base/status.h"
#include "transports/common/abort_frame.h"
#include "transports/common/handle_codec.h"
#include "transports/transport.h"

namespace ciuic::transport::tcp {

constexpr uint32_t kHandleMagic = 0x50435443;    // "CTCP"
constexpr uint32_t kHandshakeMagic = 0x53435443;  // "CTCS": the stripe handshake
constexpr uint16_t kWireVersion = 1;
constexpr int kMaxStripes = 16;
constexpr size_t kMaxAbortReason = common::kMaxAbortReason;

// Little-endian helpers (base/le_bytes.h), also spelled tcp::put_u32 and so on.
using ciuic::get_u16;
using ciuic::get_u32;
using ciuic::get_u64;
using ciuic::put_u16;
using ciuic::put_u32;
using ciuic::put_u64;

// ---- handle: a socket handle (transports/common/handle_codec.h) ----
inline constexpr common::SocketHandleCodec kHandle{
    {kHandleMagic, kWireVersion, "a TCP transport handle", "TCP"}};

// ---- stripe handshake payload ----
// Flag: split messages leave stripe 0 out (only headers and unsplit messages travel
// there), so a sender with I/O threads keeps every bulk byte off the caller's thread and
// an abort finds stripe 0 near a frame boundary. Every sender with 2+ stripes sets it;
// a receiver still accepts either layout.
constexpr uint32_t kHelloPiecesOffStripe0 = 1u;
constexpr uint32_t kHelloKnownFlags = kHelloPiecesOffStripe0;

struct StripeHello {
  uint64_t channel_id = 0;
  uint16_t stripe_index = 0;
  uint16_t stripe_count = 0;
  uint32_t flags = 0;  // kHello* bits; the receiver refuses bits it does not know
  uint64_t min_stripe_bytes = 0;
};
constexpr size_t kStripeHelloBytes = 24;
void encode_hello(const StripeHello& in, uint8_t out[kStripeHelloBytes]);
// Checks sizes and ranges; the message says what was wrong (for the listener's WARN).
Status decode_hello(const uint8_t* data, size_t size, StripeHello* out);

// ---- frame header ----
enum class FrameType : uint8_t { kData = 1, kAbort = 2 };
constexpr uint32_t kFrameMarker = 0x46430000;  // upper half marks a frame: catches desync
constexpr size_t kFrameHeaderBytes = 16;
struct FrameHeader {
  FrameType type = FrameType::kData;
  int32_t tag = 0;
  uint64_t size = 0;
};
void encode_frame(const FrameHeader& in, uint8_t out[kFrameHeaderBytes]);
Status decode_frame(const uint8_t in[kFrameHeaderBytes], FrameHeader* out);

// ---- payload split ----
// Where each stripe's piece of a `size`-byte message lies. Deterministic in (size,
// stripes, min_piece, pieces_off_stripe0) so that both sides compute it alone: a message
// below 2*min_piece stays whole on stripe 0; otherwise it is cut into pieces of nearly
// equal size whose boundaries are 4 KiB aligned (page-aligned copies in the kernel), one
// per stripe from `first`: min(stripes, size / min_piece) pieces from stripe 0, or, with
// pieces_off_stripe0, min(stripes - 1, size / min_piece) pieces from stripe 1.
struct StripeLayout {
  int first = 0;   // the stripe carrying piece 0
  int pieces = 1;  // pieces on stripes first .. first + pieces - 1
  uint64_t bounds[kMaxStripes + 1] = {};

  int end() const { return first + pieces; }  // one past the last stripe with a piece
  bool has(int stripe) const { return stripe >= first && stripe < end(); }
  uint64_t offset(int stripe) const { return has(stripe) ? bounds[stripe - first] : 0; }
  uint64_t length(int stripe) const {
    return has(stripe) ? bounds[stripe - first + 1] - bounds[stripe - first] : 0;
  }
};
StripeLayout split_message(uint64_t size, int stripes, uint64_t min_piece,
                           bool pieces_off_stripe0 = false);

}  // namespace ciuic::transport::tcp
