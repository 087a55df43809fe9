// The TCP transport: one device, the interface chosen by CIUIC_SOCKET_IFNAME. Listeners
// bind to that interface's address only; channels are striped over CIUIC_TCP_SOCKETS
// connections (tcp_connect.h, tcp_channel.h).
#include <arpa/inet.h>
#include <ifaddrs.h>

#include <cstring>
#include <fstream>

#include "base/log.h"
#include "base/net.h"
#include "transports/common/device_transport.h"
#include "transports/tcp/tcp_connect.h"
#include "transports/transport.h"

namespace ciuic::transport {
namespace tcp {
namespace {

bool same_host(const net::SocketAddress& a, const sockaddr* b) {
  if (b == nullptr || a.family() != b->sa_family) return false;
  if (a.family() == AF_INET)
    return std::memcmp(&reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr,
                       &reinterpret_cast<const sockaddr_in*>(b)->sin_addr, sizeof(in_addr)) == 0;
  return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr,
                     &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr, sizeof(in6_addr)) == 0;
}

// The name of the interface that holds `address` ("" if none does any more).
std::string interface_of(const net::SocketAddress& address) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string name;
  for (const ifaddrs* ifa = list; ifa != nullptr; ifa = ifa->ifa_next) {
    if (same_host(address, ifa->ifa_addr)) {
      name = ifa->ifa_name;
      break;
    }
  }
  freeifaddrs(list);
  return name;
}

// Link speed in Mb/s from sysfs; 0 when unknown (loopback and virtual links report none).
int link_speed_mbps(const std::string& ifname) {
  if (ifname.empty()) return 0;
  std::ifstream in("/sys/class/net/" + ifname + "/speed");
  long speed = 0;
  if (!(in >> speed) || speed <= 0 || speed > 10'000'000) return 0;
  return static_cast<int>(speed);
}

class TcpTransport final : public common::DeviceTransport {
 public:
  TcpTransport(const TransportOptions& options, net::SocketAddress local, std::string ifname)
      : DeviceTransport(options), local_(local) {
    props_.name = ifname.empty() ? local.to_string() : ifname;
    props_.speed_mbps = link_speed_mbps(ifname);
    props_.pointer_support = kHostMemory;
    props_.max_recvs = kMaxGroupedRecvs;
    props_.max_requests = kMaxRequests;
    props_.latency_us = 0;
  }

  const char* name() const override { return "tcp"; }
  int device_count() const override { return 1; }

 private:
  const DeviceProperties& properties_of(int) const override { return props_; }
  Status listen_on(int, std::unique_ptr<Listener>* out) override {
    return TcpListener::create(local_, handshake_timeout_ms(), out);
  }
  Status connect_with(int, const ConnectHandle& handle, std::unique_ptr<Connector>* out) override {
    return TcpConnector::create(handle, handshake_timeout_ms(), out);
  }

  net::SocketAddress local_;
  DeviceProperties props_;
};

}  // namespace
}  // namespace tcp

Status create_tcp_transport(const TransportOptions& options, std::unique_ptr<Transport>* out) {
  out->reset();
  net::SocketAddress local;
  std::string why;
  CIUIC_RETURN_IF_ERROR(net::choose_local_address(&local, &why));
  std::string ifname = tcp::interface_of(local);
  CIUIC_LOG_INFO(log::kNet, "TCP transport: %s; %d socket(s) per channel", why.c_str(),
                 tcp::configured_stripes());
  *out = std::make_unique<tcp::TcpTransport>(options, local, ifname);
  return Status::Ok();
}

}  // namespace ciuic::transport
