// A channel as every transport implements it: one direction of the interface
// (SendChannel or RecvChannel) over the transport's core, the state both directions of
// its channels share (the connection, its description, failure and abort). The calls that
// only forward to the core are written here once.
//
// The core provides:
//   Status register_region(void* data, size_t size, int pointer_kind,
//                          std::unique_ptr<MemoryRegion>* out);
//   std::string describe() const;  // the peer, for messages: "10.0.0.2:41234 (tcp, 4 sockets)"
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "transports/transport.h"

namespace ciuic::transport::common {

template <class Direction, class Core>
class ChannelOver : public Direction, protected Core {
 public:
  using Core::Core;

  Status register_memory(void* data, size_t size, int pointer_kind,
                         std::unique_ptr<MemoryRegion>* out) final {
    return Core::register_region(data, size, pointer_kind, out);
  }
  std::string peer_description() const final { return Core::describe(); }
};

}  // namespace ciuic::transport::common
