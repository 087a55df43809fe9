// Listener handles: the 128 opaque bytes (transport.h) that carry a listener's address and
// token out of band. Every transport's handle starts with the same header, so a handle
// given to the wrong transport, or made by another ciuic version, is caught with a reason:
//
//   header         {u32 magic, u16 version, u16 word}                            8 bytes
//
// The transports that listen on a TCP socket (tcp, ibverbs) share the whole layout:
//
//   socket handle  {u32 magic, u16 version, u16 zero, u8 address[20], u8 token[16]}  44 bytes
//
// Each transport keeps its own magic and wire version, so its handles are byte for byte
// those of earlier builds (and the NCCL plugin's handles stay valid). Unused bytes are 0.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/handshake.h"
#include "base/net.h"
#include "base/status.h"
#include "transports/transport.h"

namespace ciuic::transport::common {

// What tells one transport's handles from another's.
struct HandleFormat {
  uint32_t magic;
  uint16_t version;
  const char* noun;  // for messages: "a TCP transport handle", "an ibverbs transport handle"
  const char* name;  // for messages: "TCP", "ibverbs", "shm"
};

constexpr size_t kHandleHeaderBytes = 8;

// Writes the header; `word` is the last u16 (0, or a length the format defines).
void encode_handle_header(const HandleFormat& format, uint16_t word, ConnectHandle* out);
// Checks magic and version; *word gets the last u16.
Status decode_handle_header(const HandleFormat& format, const ConnectHandle& in, uint16_t* word);

// ---- the socket handle ----
struct SocketHandle {
  net::SocketAddress address;
  Key128 token{};
};
constexpr size_t kSocketHandleBytes = kHandleHeaderBytes + net::SocketAddress::kPackedBytes + 16;
static_assert(kSocketHandleBytes <= kHandleBytes, "a socket handle must fit NCCL's 128 bytes");

// The socket handles of one transport: `kHandle.encode(...)`, `kHandle.decode(...)`.
class SocketHandleCodec {
 public:
  constexpr explicit SocketHandleCodec(HandleFormat format) : format_(format) {}
  void encode(const SocketHandle& in, ConnectHandle* out) const;
  // Checks the header (its word must be 0) and the address.
  Status decode(const ConnectHandle& in, SocketHandle* out) const;

 private:
  HandleFormat format_;
};

}  // namespace ciuic::transport::common
