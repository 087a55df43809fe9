// The ibverbs transport's wire formats. Fixed sizes, little-endian, every field checked on
// decode (a handle or record may come from anyone who reached the socket before the
// handshake proved otherwise; the record itself travels inside the MAC-protected handshake).
//
//   handle     {u32 magic "CIBV", u16 version, u16 zero, address[20], token[16]}   44 bytes
//   record     one side's queue pairs and memory (ConnRecord)                     104 bytes
//   side frame on the TCP socket that stays open: {u32 marker|type, u32 length} + reason;
//              READY (length 0) once the connector's QPs are in RTS, ABORT carries up to
//              256 bytes of reason.
//   FIFO entry what a receive buffer looks like to the sender (FifoEntry, 32 bytes)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/handshake.h"
#include "base/net.h"
#include "base/status.h"
#include "transports/common/abort_frame.h"
#include "transports/common/handle_codec.h"
#include "transports/transport.h"

namespace ciuic::transport::ib {

constexpr uint32_t kHandleMagic = 0x56424943;     // "CIBV"
constexpr uint32_t kHandshakeMagic = 0x53424943;  // "CIBS"
constexpr uint16_t kWireVersion = 2;  // 2: a group of one buffer may close with its size in the IMM
constexpr int kMaxQps = 8;           // CIUIC_IB_QPS_PER_CONN upper bound
constexpr int kFifoSlots = kMaxRequests;  // one per outstanding grouped receive
constexpr size_t kMaxAbortReason = common::kMaxAbortReason;

// The handle: a socket handle (transports/common/handle_codec.h).
inline constexpr common::SocketHandleCodec kHandle{
    {kHandleMagic, kWireVersion, "an ibverbs transport handle", "ibverbs"}};

// One side of a connection, exchanged in the handshake: the connector's record rides in
// its response, the listener's in its verdict.
struct ConnRecord {
  uint8_t qp_count = 0;       // 1..kMaxQps; the listener takes the connector's count
  uint8_t link_layer = 0;     // IBV_LINK_LAYER_*
  uint8_t mtu = 0;            // enum ibv_mtu of the port (1..5)
  uint8_t gid_index = 0;      // for messages only: the peer's own GID index
  uint16_t lid = 0;
  uint32_t psn = 0;           // first packet sequence number, 24 bits
  uint8_t gid[16] = {};
  uint32_t qpn[kMaxQps] = {};
  uint64_t fifo_addr = 0;     // connector: where the receiver writes FIFO entries
  uint32_t fifo_rkey = 0;
  uint64_t sizes_addr = 0;    // listener: where the sender writes each group's sizes
  uint32_t sizes_rkey = 0;
};
constexpr size_t kConnRecordBytes = 104;
void encode_record(const ConnRecord& in, uint8_t out[kConnRecordBytes]);
Status decode_record(const uint8_t* data, size_t size, ConnRecord* out);

// Side-socket frames.
enum class SideFrame : uint8_t { kReady = 1, kAbort = 2 };
constexpr uint32_t kSideMarker = 0x49430000;
constexpr size_t kSideHeaderBytes = 8;
void encode_side_header(SideFrame type, uint32_t length, uint8_t out[kSideHeaderBytes]);
Status decode_side_header(const uint8_t in[kSideHeaderBytes], SideFrame* type, uint32_t* length);

// A receive buffer as the sender sees it. The receiver writes all n entries of a grouped
// receive at once into the sender's FIFO slot seq % kFifoSlots.
struct FifoEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t rkey;
  int32_t tag;
  uint32_t seq;    // low 32 bits of the receive's sequence number
  uint16_t count;  // n of the grouped receive
  uint16_t index;  // this entry's place in the group
};
static_assert(sizeof(FifoEntry) == 32);

// Each group's sizes, written by the sender into the receiver's slot seq % kFifoSlots.
struct SizesRecord {
  uint64_t size[kMaxGroupedRecvs];
};
static_assert(sizeof(SizesRecord) == 64);

// The memory of a channel that the peer writes into, registered once per channel.
struct ControlBlock {
  FifoEntry fifo[kFifoSlots][kMaxGroupedRecvs];  // sender: written by the receiver
  SizesRecord sizes[kFifoSlots];                 // receiver: written by the sender
  FifoEntry fifo_staging[kFifoSlots][kMaxGroupedRecvs];  // receiver: source of FIFO writes
  SizesRecord sizes_staging[kFifoSlots];         // sender: source of a sizes write
};

}  // namespace ciuic::transport::ib
