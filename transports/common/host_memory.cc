#include "transports/common/host_memory.h"

#include <string>

namespace ciuic::transport::common {
namespace {

class HostRegion final : public MemoryRegion {};

}  // namespace

Status register_host_memory(const char* transport, int pointer_kind,
                            std::unique_ptr<MemoryRegion>* out) {
  if (pointer_kind != kHostMemory)
    return unsupported(std::string(transport) + " moves host memory only (pointer kind " +
                       std::to_string(pointer_kind) + "); stage GPU buffers through host memory");
  *out = std::make_unique<HostRegion>();
  return Status::Ok();
}

}  // namespace ciuic::transport::common
