#include "core/store_protocol.h"

namespace ciuic::core::store {
namespace {

void put_u16_at(uint8_t* out, uint16_t value) {
  out[0] = static_cast<uint8_t>(value);
  out[1] = static_cast<uint8_t>(value >> 8);
}
void put_u32_at(uint8_t* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}
void put_u64_at(uint8_t* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}
uint16_t get_u16(const uint8_t* in) { return static_cast<uint16_t>(in[0] | (in[1] << 8)); }
uint64_t get_u64(const uint8_t* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(in[i]) << (8 * i);
  return value;
}

}  // namespace

void put_u32(std::vector<uint8_t>& out, uint32_t value) {
  uint8_t bytes[4];
  put_u32_at(bytes, value);
  out.insert(out.end(), bytes, bytes + 4);
}

uint32_t get_u32(const uint8_t* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= static_cast<uint32_t>(in[i]) << (8 * i);
  return value;
}

std::vector<uint8_t> encode_join(const Join& join) {
  std::vector<uint8_t> out;
  put_u32(out, static_cast<uint32_t>(join.rank));
  put_u32(out, static_cast<uint32_t>(join.nranks));
  uint8_t len[2];
  put_u16_at(len, static_cast<uint16_t>(join.name_space.size()));
  out.insert(out.end(), len, len + 2);
  out.insert(out.end(), join.name_space.begin(), join.name_space.end());
  return out;
}

Status decode_join(const std::vector<uint8_t>& payload, Join* out) {
  if (payload.size() < 10) return invalid_argument("join message too short");
  size_t len = get_u16(payload.data() + 8);
  if (len > kMaxNamespaceBytes)
    return invalid_argument("namespace of " + std::to_string(len) + " bytes (limit " +
                            std::to_string(kMaxNamespaceBytes) + ")");
  if (payload.size() != 10 + len) return invalid_argument("join message length mismatch");
  out->rank = static_cast<int32_t>(get_u32(payload.data()));
  out->nranks = static_cast<int32_t>(get_u32(payload.data() + 4));
  out->name_space.assign(payload.begin() + 10, payload.end());
  return Status::Ok();
}

void encode_request_header(const RequestHeader& header, uint8_t out[kRequestHeaderBytes]) {
  put_u32_at(out, header.magic);
  put_u16_at(out + 4, header.op);
  put_u16_at(out + 6, header.tag_len);
  put_u32_at(out + 8, header.value_len);
  put_u32_at(out + 12, header.wait_ms);
}

RequestHeader decode_request_header(const uint8_t in[kRequestHeaderBytes]) {
  RequestHeader header;
  header.magic = get_u32(in);
  header.op = get_u16(in + 4);
  header.tag_len = get_u16(in + 6);
  header.value_len = get_u32(in + 8);
  header.wait_ms = get_u32(in + 12);
  return header;
}

void encode_reply_header(const ReplyHeader& header, uint8_t out[kReplyHeaderBytes]) {
  put_u32_at(out, header.magic);
  put_u16_at(out + 4, header.status);
  put_u16_at(out + 6, header.tag_len);
  put_u32_at(out + 8, header.count);
  put_u32_at(out + 12, 0);
  put_u64_at(out + 16, header.body_len);
}

ReplyHeader decode_reply_header(const uint8_t in[kReplyHeaderBytes]) {
  ReplyHeader header;
  header.magic = get_u32(in);
  header.status = get_u16(in + 4);
  header.tag_len = get_u16(in + 6);
  header.count = get_u32(in + 8);
  header.body_len = get_u64(in + 16);
  return header;
}

}  // namespace ciuic::core::store
