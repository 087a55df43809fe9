#include "transports/shm/shm_wire.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "base/le_bytes.h"

namespace ciuic::transport::shm {

const char* path_name(Path p) { return p == Path::kCma ? "cma" : "copy"; }

const char* cma_setting_name(CmaSetting s) {
  switch (s) {
    case CmaSetting::kOn:
      return "on";
    case CmaSetting::kOff:
      return "off";
    default:
      return "auto";
  }
}

namespace {
constexpr size_t kHandleFixedBytes = 56;
static_assert(kHandleFixedBytes + kMaxNameBytes <= kHandleBytes,
              "the shm handle must fit NCCL's 128 bytes");
}  // namespace

void encode_handle(const HandleContents& in, ConnectHandle* out) {
  const size_t len = std::min(in.name.size(), kMaxNameBytes);
  common::encode_handle_header(kHandleFormat, static_cast<uint16_t>(len), out);
  uint8_t* p = out->bytes;
  std::memcpy(p + 8, in.token.data(), 16);
  std::memcpy(p + 24, in.boot_id, 16);
  put_u64(p + 40, in.netns_inode);
  put_u32(p + 48, in.pid);
  std::memcpy(p + kHandleFixedBytes, in.name.data(), len);
}

Status decode_handle(const ConnectHandle& in, HandleContents* out) {
  const uint8_t* p = in.bytes;
  uint16_t len = 0;  // the header's word: the socket name's length
  CIUIC_RETURN_IF_ERROR(common::decode_handle_header(kHandleFormat, in, &len));
  if (len == 0 || len > kMaxNameBytes)
    return invalid_argument("shm handle names a socket of " + std::to_string(len) + " bytes (1.." +
                            std::to_string(kMaxNameBytes) + ")");
  std::memcpy(out->token.data(), p + 8, 16);
  std::memcpy(out->boot_id, p + 24, 16);
  out->netns_inode = get_u64(p + 40);
  out->pid = get_u32(p + 48);
  out->name.assign(reinterpret_cast<const char*>(p + kHandleFixedBytes), len);
  for (char c : out->name) {
    if (c == '\0') return invalid_argument("shm handle's socket name contains a NUL byte");
  }
  return Status::Ok();
}

void encode_hello(const Hello& in, uint8_t out[kHelloBytes]) {
  std::memset(out, 0, kHelloBytes);
  put_u64(out, in.ring_bytes);
  put_u32(out + 8, static_cast<uint32_t>(in.cma));
  put_u64(out + 16, in.probe_address);
  put_u64(out + 24, in.probe_value);
}

Status decode_hello(const uint8_t* data, size_t size, Hello* out) {
  if (size != kHelloBytes)
    return invalid_argument("shm hello of " + std::to_string(size) + " bytes, expected " +
                            std::to_string(kHelloBytes));
  out->ring_bytes = get_u64(data);
  uint32_t cma = get_u32(data + 8);
  if (cma > static_cast<uint32_t>(CmaSetting::kOff))
    return invalid_argument("shm hello with unknown CMA setting " + std::to_string(cma));
  out->cma = static_cast<CmaSetting>(cma);
  out->probe_address = get_u64(data + 16);
  out->probe_value = get_u64(data + 24);
  return Status::Ok();
}

void encode_reply(Path path, uint8_t out[kReplyBytes]) {
  std::memset(out, 0, kReplyBytes);
  put_u32(out, static_cast<uint32_t>(path));
}

Status decode_reply(const uint8_t* data, size_t size, Path* out) {
  if (size != kReplyBytes)
    return invalid_argument("shm reply of " + std::to_string(size) + " bytes, expected " +
                            std::to_string(kReplyBytes));
  uint32_t path = get_u32(data);
  if (path != static_cast<uint32_t>(Path::kCma) && path != static_cast<uint32_t>(Path::kCopy))
    return invalid_argument("shm reply names unknown path " + std::to_string(path));
  *out = static_cast<Path>(path);
  return Status::Ok();
}

size_t encode_abort(std::string_view reason, uint8_t out[kAbortHeaderBytes + kMaxAbortReason]) {
  if (reason.size() > kMaxAbortReason) reason = reason.substr(0, kMaxAbortReason);
  put_u32(out, kAbortMagic);
  put_u32(out + 4, static_cast<uint32_t>(reason.size()));
  std::memcpy(out + kAbortHeaderBytes, reason.data(), reason.size());
  return kAbortHeaderBytes + reason.size();
}

Status decode_abort_header(const uint8_t in[kAbortHeaderBytes], size_t* reason_len) {
  if (get_u32(in) != kAbortMagic)
    return internal_error("unexpected bytes on the shm channel's socket (not an abort frame)");
  uint32_t len = get_u32(in + 4);
  if (len > kMaxAbortReason)
    return internal_error("abort frame with a " + std::to_string(len) + "-byte reason (at most " +
                          std::to_string(kMaxAbortReason) + ")");
  *reason_len = len;
  return Status::Ok();
}

void read_boot_id(uint8_t out[16]) {
  std::memset(out, 0, 16);
  FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f == nullptr) return;
  char text[64] = {};
  size_t n = std::fread(text, 1, sizeof(text) - 1, f);
  std::fclose(f);
  int nibbles = 0;
  for (size_t i = 0; i < n && nibbles < 32; ++i) {
    char c = text[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) continue;
    out[nibbles / 2] = static_cast<uint8_t>(out[nibbles / 2] | (nibbles % 2 == 0 ? v << 4 : v));
    ++nibbles;
  }
}

uint64_t read_netns_inode() {
  struct stat st {};
  if (::stat("/proc/self/ns/net", &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace ciuic::transport::shm
