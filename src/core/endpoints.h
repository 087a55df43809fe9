// Endpoint records: what each rank of a communicator publishes so that the others can reach
// it, made by Communicator::open_endpoint and read by Communicator::adopt_peers (both in
// endpoints.cc, with the choice of transports and of the node a rank is on). init carries
// the records through the bootstrap store, a split through the parent's own connections.
//
// A record, every text NUL-terminated in kHostNameBytes:
//   flags (kHasLocalListener) | the network listener's handle | the local listener's handle
//   (if any) | the host name | the node key | the memory scope (boot id and network
//   namespace: shared memory needs both the same)
#pragma once

#include <cstddef>
#include <cstdint>

#include "transports/transport.h"

namespace ciuic::core {

constexpr size_t kHostNameBytes = 64;
constexpr size_t kFlagsBytes = 8;
constexpr size_t kNetHandleAt = kFlagsBytes;
constexpr size_t kLocalHandleAt = kNetHandleAt + transport::kHandleBytes;
constexpr size_t kHostNameAt = kLocalHandleAt + transport::kHandleBytes;
constexpr size_t kNodeKeyAt = kHostNameAt + kHostNameBytes;
constexpr size_t kMemoryScopeAt = kNodeKeyAt + kHostNameBytes;
constexpr size_t kEndpointRecordBytes = kMemoryScopeAt + kHostNameBytes;
constexpr uint8_t kHasLocalListener = 0x1;

}  // namespace ciuic::core
