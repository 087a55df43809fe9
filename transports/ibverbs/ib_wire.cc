#include "transports/ibverbs/ib_wire.h"

#include <cstring>

#include "base/le_bytes.h"

namespace ciuic::transport::ib {

// Layout: qp_count, link_layer, mtu, gid_index (4) | lid u16, zero u16 (4) | psn (4) |
// gid (16) | qpn[8] (32) | fifo_addr (8) | fifo_rkey (4) | zero (4) | sizes_addr (8) |
// sizes_rkey (4) | zero (4) | magic (4) | zero (8)  = 104
void encode_record(const ConnRecord& in, uint8_t out[kConnRecordBytes]) {
  std::memset(out, 0, kConnRecordBytes);
  out[0] = in.qp_count;
  out[1] = in.link_layer;
  out[2] = in.mtu;
  out[3] = in.gid_index;
  put_u16(out + 4, in.lid);
  put_u32(out + 8, in.psn);
  std::memcpy(out + 12, in.gid, 16);
  for (int i = 0; i < kMaxQps; ++i) put_u32(out + 28 + 4 * i, in.qpn[i]);
  put_u64(out + 60, in.fifo_addr);
  put_u32(out + 68, in.fifo_rkey);
  put_u64(out + 76, in.sizes_addr);
  put_u32(out + 84, in.sizes_rkey);
  put_u32(out + 92, kHandshakeMagic);
}

Status decode_record(const uint8_t* data, size_t size, ConnRecord* out) {
  if (size != kConnRecordBytes)
    return invalid_argument("connection record of " + std::to_string(size) + " bytes, expected " +
                            std::to_string(kConnRecordBytes));
  if (get_u32(data + 92) != kHandshakeMagic)
    return invalid_argument("connection record without its marker");
  ConnRecord r;
  r.qp_count = data[0];
  r.link_layer = data[1];
  r.mtu = data[2];
  r.gid_index = data[3];
  r.lid = get_u16(data + 4);
  r.psn = get_u32(data + 8);
  std::memcpy(r.gid, data + 12, 16);
  for (int i = 0; i < kMaxQps; ++i) r.qpn[i] = get_u32(data + 28 + 4 * i);
  r.fifo_addr = get_u64(data + 60);
  r.fifo_rkey = get_u32(data + 68);
  r.sizes_addr = get_u64(data + 76);
  r.sizes_rkey = get_u32(data + 84);
  if (r.qp_count < 1 || r.qp_count > kMaxQps)
    return invalid_argument("connection record with " + std::to_string(r.qp_count) +
                            " queue pairs (1.." + std::to_string(kMaxQps) + ")");
  if (r.mtu < 1 || r.mtu > 5)
    return invalid_argument("connection record with MTU code " + std::to_string(r.mtu));
  if (r.link_layer > 2)
    return invalid_argument("connection record with link layer " + std::to_string(r.link_layer));
  if (r.psn > 0xffffff) return invalid_argument("connection record with a PSN beyond 24 bits");
  for (int i = 0; i < kMaxQps; ++i) {
    bool used = i < r.qp_count;
    if (used && (r.qpn[i] == 0 || r.qpn[i] > 0xffffff))
      return invalid_argument("connection record with QPN " + std::to_string(r.qpn[i]));
    if (!used && r.qpn[i] != 0) return invalid_argument("connection record with stray QPNs");
  }
  *out = r;
  return Status::Ok();
}

void encode_side_header(SideFrame type, uint32_t length, uint8_t out[kSideHeaderBytes]) {
  put_u32(out, kSideMarker | static_cast<uint32_t>(type));
  put_u32(out + 4, length);
}

Status decode_side_header(const uint8_t in[kSideHeaderBytes], SideFrame* type, uint32_t* length) {
  uint32_t word = get_u32(in);
  *length = get_u32(in + 4);
  if ((word & 0xffff0000u) != kSideMarker)
    return invalid_argument("garbage on the connection's TCP socket");
  uint32_t t = word & 0xffffu;
  if (t == static_cast<uint32_t>(SideFrame::kReady) && *length == 0) {
    *type = SideFrame::kReady;
    return Status::Ok();
  }
  if (t == static_cast<uint32_t>(SideFrame::kAbort) && *length <= kMaxAbortReason) {
    *type = SideFrame::kAbort;
    return Status::Ok();
  }
  return invalid_argument("unknown frame (type " + std::to_string(t) + ", " +
                          std::to_string(*length) + " bytes) on the connection's TCP socket");
}

}  // namespace ciuic::transport::ib
