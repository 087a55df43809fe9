// The shared-memory transport's formats: the listener handle, the connector's hello (its
// handshake payload), the listener's reply, the ABORT frame on the Unix socket, and the
// message header in the ring. Handle, hello, reply and frame are little-endian byte
// strings with fixed sizes (they cross a socket); the ring header is a plain struct (both
// sides run on one host), checked field by field all the same.
//
//   handle  {u32 magic "CSHM", u16 version, u16 name_len, u8 token[16], u8 boot_id[16],
//            u64 netns_inode, u32 pid, u32 zero, char name[name_len <= 64]}   <= 120 bytes
//   hello   {u64 ring_bytes, u32 cma_setting, u32 zero, u64 probe_address,
//            u64 probe_value}                                                  32 bytes
//   reply   {u32 path (1 = CMA, 2 = copy), u32 zero}                            8 bytes
//   frame   {u32 magic "CSHA", u32 reason_len <= 256, reason} on the socket, either way
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/handshake.h"
#include "base/status.h"
#include "transports/common/abort_frame.h"
#include "transports/common/handle_codec.h"
#include "transports/transport.h"

namespace ciuic::transport::shm {

constexpr uint32_t kHandleMagic = 0x4d485343;     // "CSHM"
constexpr uint32_t kHandshakeMagic = 0x53485343;  // "CSHS"
constexpr uint32_t kAbortMagic = 0x41485343;      // "CSHA"
constexpr uint16_t kWireVersion = 1;
constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxAbortReason = common::kMaxAbortReason;

// Which way a channel's large messages travel.
enum class Path : uint32_t {
  kCma = 1,   // the receiver reads the sender's buffer with process_vm_readv (one copy)
  kCopy = 2,  // through the ring in chunks (two copies, pipelined)
};
const char* path_name(Path p);

// What CIUIC_SHM_CMA asks for.
enum class CmaSetting : uint32_t { kAuto = 0, kOn = 1, kOff = 2 };
const char* cma_setting_name(CmaSetting s);

// ---- handle: its header is transports/common/handle_codec.h's, the word the name's length ----
inline constexpr common::HandleFormat kHandleFormat{kHandleMagic, kWireVersion,
                                                    "a shm transport handle", "shm"};
struct HandleContents {
  std::string name;  // abstract socket name, without the leading NUL
  Key128 token{};
  uint8_t boot_id[16] = {};  // the host's boot id: a handle from another host is caught
  uint64_t netns_inode = 0;  // abstract sockets live in a network namespace; 0 = unknown
  uint32_t pid = 0;          // the listener's pid, for messages
};
void encode_handle(const HandleContents& in, ConnectHandle* out);
Status decode_handle(const ConnectHandle& in, HandleContents* out);

// ---- hello: the connector's handshake payload ----
struct Hello {
  uint64_t ring_bytes = 0;
  CmaSetting cma = CmaSetting::kAuto;
  uint64_t probe_address = 0;  // 8 bytes in the sender's memory holding probe_value
  uint64_t probe_value = 0;
};
constexpr size_t kHelloBytes = 32;
void encode_hello(const Hello& in, uint8_t out[kHelloBytes]);
Status decode_hello(const uint8_t* data, size_t size, Hello* out);

// ---- reply: the listener's accepted-verdict payload ----
constexpr size_t kReplyBytes = 8;
void encode_reply(Path path, uint8_t out[kReplyBytes]);
Status decode_reply(const uint8_t* data, size_t size, Path* out);

// ---- ABORT frame on the socket ----
constexpr size_t kAbortHeaderBytes = 8;
// Writes the frame for `reason` (cut to kMaxAbortReason) into out; returns its length.
size_t encode_abort(std::string_view reason, uint8_t out[kAbortHeaderBytes + kMaxAbortReason]);
// Checks a frame header; *reason_len gets the reason's length.
Status decode_abort_header(const uint8_t in[kAbortHeaderBytes], size_t* reason_len);

// ---- this host ----
// The kernel's boot id (16 bytes), all zero where it cannot be read.
void read_boot_id(uint8_t out[16]);
// The inode of this process's network namespace, 0 where it cannot be read.
uint64_t read_netns_inode();

}  // namespace ciuic::transport::shm
