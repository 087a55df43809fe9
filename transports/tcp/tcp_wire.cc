#include "transports/tcp/tcp_wire.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

namespace ciuic::transport::tcp {

void encode_hello(const StripeHello& in, uint8_t out[kStripeHelloBytes]) {
  std::memset(out, 0, kStripeHelloBytes);
  put_u64(out, in.channel_id);
  put_u16(out + 8, in.stripe_index);
  put_u16(out + 10, in.stripe_count);
  put_u32(out + 12, in.flags);
  put_u64(out + 16, in.min_stripe_bytes);
}

Status decode_hello(const uint8_t* data, size_t size, StripeHello* out) {
  if (size != kStripeHelloBytes)
    return invalid_argument("stripe hello of " + std::to_string(size) + " bytes, expected " +
                            std::to_string(kStripeHelloBytes));
  out->channel_id = get_u64(data);
  out->stripe_index = get_u16(data + 8);
  out->stripe_count = get_u16(data + 10);
  out->flags = get_u32(data + 12);
  out->min_stripe_bytes = get_u64(data + 16);
  if ((out->flags & ~kHelloKnownFlags) != 0)
    return invalid_argument("unknown stripe flags 0x" + [&] {
      char hex[9];
      std::snprintf(hex, sizeof(hex), "%08x", out->flags & ~kHelloKnownFlags);
      return std::string(hex);
    }());
  if (out->stripe_count < 1 || out->stripe_count > kMaxStripes)
    return invalid_argument("stripe count " + std::to_string(out->stripe_count) +
                            " outside 1.." + std::to_string(kMaxStripes));
  if (out->stripe_index >= out->stripe_count)
    return invalid_argument("stripe index " + std::to_string(out->stripe_index) +
                            " not below the stripe count " + std::to_string(out->stripe_count));
  if (out->min_stripe_bytes == 0) return invalid_argument("minimum stripe size of 0 bytes");
  return Status::Ok();
}

void encode_frame(const FrameHeader& in, uint8_t out[kFrameHeaderBytes]) {
  put_u32(out, kFrameMarker | static_cast<uint32_t>(in.type));
  put_u32(out + 4, static_cast<uint32_t>(in.tag));
  put_u64(out + 8, in.size);
}

Status decode_frame(const uint8_t in[kFrameHeaderBytes], FrameHeader* out) {
  uint32_t word = get_u32(in);
  if ((word & 0xffff0000u) != kFrameMarker)
    return internal_error("stream out of step: expected a frame header, got 0x" +
                          [&] {
                            char hex[9];
                            std::snprintf(hex, sizeof(hex), "%08x", word);
                            return std::string(hex);
                          }());
  uint32_t type = word & 0xffffu;
  if (type != static_cast<uint32_t>(FrameType::kData) &&
      type != static_cast<uint32_t>(FrameType::kAbort))
    return internal_error("unknown frame type " + std::to_string(type));
  out->type = static_cast<FrameType>(type);
  out->tag = static_cast<int32_t>(get_u32(in + 4));
  out->size = get_u64(in + 8);
  if (out->type == FrameType::kAbort && out->size > kMaxAbortReason)
    return internal_error("abort frame with a " + std::to_string(out->size) +
                          "-byte reason (at most " + std::to_string(kMaxAbortReason) + ")");
  return Status::Ok();
}

StripeLayout split_message(uint64_t size, int stripes, uint64_t min_piece,
                           bool pieces_off_stripe0) {
  constexpr uint64_t kAlign = 4096;
  StripeLayout layout;
  min_piece = std::max<uint64_t>(min_piece, 1);
  stripes = std::max(stripes, 1);
  // Below two minimum pieces a message is not split: whole on stripe 0, next to its header.
  if (size / min_piece < 2) {
    layout.bounds[1] = size;
    return layout;
  }
  const bool off = pieces_off_stripe0 && stripes > 1;
  layout.first = off ? 1 : 0;
  uint64_t pieces = std::min<uint64_t>(static_cast<uint64_t>(stripes - layout.first), size / min_piece);
  layout.pieces = static_cast<int>(pieces);
  layout.bounds[0] = 0;
  for (uint64_t i = 1; i < pieces; ++i) {
    layout.bounds[i] = (size / pieces * i) / kAlign * kAlign;
    if (layout.bounds[i] < layout.bounds[i - 1]) layout.bounds[i] = layout.bounds[i - 1];
  }
  layout.bounds[pieces] = size;
  return layout;
}

}  // namespace ciuic::transport::tcp
