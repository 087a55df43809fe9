// The bootstrap store's wire format, after the authenticated handshake (base/handshake.h).
//
// Join (the client's handshake payload):
//   u32 rank, u32 nranks, u16 namespace_len (<= 128), namespace bytes
// Request (client -> server), fixed header then tag and value:
//   u32 magic, u16 op, u16 tag_len (<= 256), u32 value_len (<= 16 MiB), u32 wait_ms
// Reply (server -> client), fixed header then body:
//   u32 magic, u16 status, u16 tag_len, u32 count, u32 reserved, u64 body_len
//   body = tag, then for kOk `count` x {u32 len, bytes} in rank order, else the error text.
// All integers little-endian. Anything outside these bounds drops the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace ciuic::core::store {

constexpr size_t kMaxNamespaceBytes = 128;
constexpr size_t kMaxTagBytes = 256;
constexpr size_t kMaxValueBytes = size_t{16} << 20;
constexpr size_t kMaxErrorBytes = 4096;
constexpr int kMaxRanks = 1 << 24;

constexpr uint32_t kRequestMagic = 0x51524943;  // "CIRQ"
constexpr uint32_t kReplyMagic = 0x50524943;    // "CIRP"
constexpr size_t kRequestHeaderBytes = 16;
constexpr size_t kReplyHeaderBytes = 24;
// wait_ms value meaning "no deadline".
constexpr uint32_t kWaitForever = 0xffffffffu;

enum Op : uint16_t { kAllgather = 1 };

enum ReplyStatus : uint16_t {
  kOk = 0,
  kPeerLeft = 1,   // a member closed its connection before contributing
  kTimeout = 2,    // the request's wait_ms passed before every rank contributed
  kRejected = 3,   // the request made no sense (e.g. the same rank twice)
};

struct Join {
  std::string name_space;
  int rank = -1;
  int nranks = -1;
};
std::vector<uint8_t> encode_join(const Join& join);
// Checks lengths only; the server checks the ranks against its namespace.
Status decode_join(const std::vector<uint8_t>& payload, Join* out);

struct RequestHeader {
  uint32_t magic = kRequestMagic;
  uint16_t op = kAllgather;
  uint16_t tag_len = 0;
  uint32_t value_len = 0;
  uint32_t wait_ms = kWaitForever;
};
void encode_request_header(const RequestHeader& header, uint8_t out[kRequestHeaderBytes]);
RequestHeader decode_request_header(const uint8_t in[kRequestHeaderBytes]);

struct ReplyHeader {
  uint32_t magic = kReplyMagic;
  uint16_t status = kOk;
  uint16_t tag_len = 0;
  uint32_t count = 0;
  uint64_t body_len = 0;
};
void encode_reply_header(const ReplyHeader& header, uint8_t out[kReplyHeaderBytes]);
ReplyHeader decode_reply_header(const uint8_t in[kReplyHeaderBytes]);

// Little-endian helpers shared by both ends.
void put_u32(std::vector<uint8_t>& out, uint32_t value);
uint32_t get_u32(const uint8_t* in);

}  // namespace ciuic::core::store
