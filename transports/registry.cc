#include <string>

#include "transports/transport.h"

namespace ciuic::transport {

Status create_tcp_transport(const TransportOptions& options, std::unique_ptr<Transport>* out);
Status create_ibverbs_transport(const TransportOptions& options, std::unique_ptr<Transport>* out);
Status create_shm_transport(const TransportOptions& options, std::unique_ptr<Transport>* out);

// One line per transport. Order is preference for "auto": the first that works wins.
const std::vector<TransportEntry>& registered_transports() {
  static const std::vector<TransportEntry> entries = {
      {"ibverbs", &create_ibverbs_transport, "RDMA over InfiniBand/RoCE (libibverbs)"},
      {"tcp", &create_tcp_transport, "TCP sockets, striped over several connections"},
      {"shm", &create_shm_transport, "shared memory between processes of one host", true},
  };
  return entries;
}

Status Channel::register_dmabuf(void*, size_t, uint64_t, int, std::unique_ptr<MemoryRegion>*) {
  return unsupported("this transport cannot register dmabuf memory");
}

Status RecvChannel::iflush(int, void* const*, const size_t*, MemoryRegion* const*,
                           Request** request) {
  *request = nullptr;  // host memory: received data is already visible
  return Status::Ok();
}

Status create_transport(std::string_view name, const TransportOptions& options,
                        std::unique_ptr<Transport>* out, std::string* why) {
  std::string names;
  for (const TransportEntry& e : registered_transports()) {
    if (name == "auto") {
      if (e.same_host_only) continue;
      Status s = e.create(options, out);
      if (s.ok()) {
        if (why) *why = std::string("auto chose ") + e.name + " (" + e.description + ")" + names;
        return s;
      }
      names += std::string("; ") + e.name + " unavailable: " + s.message();
      continue;
    }
    if (name == e.name) {
      Status s = e.create(options, out);
      if (s.ok() && why) *why = std::string(e.name) + " (requested)";
      return s.prefix(std::string("transport ") + e.name);
    }
    names += std::string(names.empty() ? "" : ", ") + e.name;
  }
  if (name == "auto") return unsupported("no transport works here" + names);
  return invalid_argument("unknown transport '" + std::string(name) + "' (known: " + names + ")");
}

}  // namespace ciuic::transport
