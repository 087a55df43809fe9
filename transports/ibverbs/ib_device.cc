#include "transports/ibverbs/ib_device.h"

#include <arpa/inet.h>
#include <unistd.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>

#include "base/config.h"
#include "base/log.h"
#include "base/net.h"
#include "transports/ibverbs/ib_select.h"
#include "transports/ibverbs/ib_wire.h"

namespace ciuic::transport::ib {
namespace {

const config::StringParam kHca{
    "CIUIC_IB_HCA", "",
    "ibverbs: devices/ports to use, NCCL syntax (mlx5_0:1,mlx5_1; ^ excludes; = exact); a "
    "plain name is exact (mlx5_1 does not match mlx5_10), mlx5_* is a prefix"};
const config::IntParam kGidIndex{
    "CIUIC_IB_GID_INDEX", -1,
    "ibverbs: GID index on RoCE ports; -1 chooses (RoCE v2, IPv4-mapped, the chosen interface's address)"};
const config::IntParam kTrafficClass{"CIUIC_IB_TC", 0, "ibverbs: IP traffic class of RoCE packets (0..255)"};
const config::IntParam kServiceLevel{"CIUIC_IB_SL", 0, "ibverbs: InfiniBand service level (0..15)"};
const config::IntParam kTimeout{
    "CIUIC_IB_TIMEOUT", 20, "ibverbs: ACK timeout exponent, 4.096 us * 2^value (1..31)"};
const config::IntParam kRetryCount{"CIUIC_IB_RETRY_CNT", 7, "ibverbs: transport retries before a send fails (0..7)"};
const config::IntParam kQpsPerConn{
    "CIUIC_IB_QPS_PER_CONN", 1,
    "ibverbs: queue pairs per channel, 1..8; large messages are striped over them (multi-path fabrics)"};
const config::IntParam kBounceBytes{
    "CIUIC_IB_BOUNCE_BYTES", 1 << 20,
    "ibverbs: unregistered buffers up to this size go through registered staging buffers; "
    "larger ones are registered for the request's duration"};
const config::IntParam kRegCacheMb{
    "CIUIC_IB_REG_CACHE_MB", 0,
    "ibverbs: MiB of registrations kept after their last user for reuse; 0 (safe) keeps none: "
    "memory freed and re-mapped under a kept registration cannot be detected"};

int clamp_param(const config::IntParam& p, int64_t lo, int64_t hi) {
  int64_t v = p.get();
  if (v < lo || v > hi) {
    int64_t fixed = v < lo ? lo : hi;
    CIUIC_LOG_WARN(log::kNet, "%s=%lld is outside %lld..%lld; using %lld", p.name(),
                   static_cast<long long>(v), static_cast<long long>(lo),
                   static_cast<long long>(hi), static_cast<long long>(fixed));
    return static_cast<int>(fixed);
  }
  return static_cast<int>(v);
}

#if CIUIC_HAVE_VERBS_H

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

const char* mtu_text(int mtu) {
  switch (mtu) {
    case IBV_MTU_256: return "256";
    case IBV_MTU_512: return "512";
    case IBV_MTU_1024: return "1024";
    case IBV_MTU_2048: return "2048";
    case IBV_MTU_4096: return "4096";
    default: return "?";
  }
}

// The GID table of a RoCE port, from sysfs (types and netdevs are only there).
std::vector<GidEntry> read_gid_table(const Hca& hca, int port, int length) {
  std::vector<GidEntry> table;
  std::string base = "/sys/class/infiniband/" + hca.name + "/ports/" + std::to_string(port);
  for (int i = 0; i < length && i < 1024; ++i) {
    GidEntry e;
    e.index = i;
    if (!parse_gid_text(read_line(base + "/gids/" + std::to_string(i)), &e.gid)) {
      ibv_gid gid{};
      if (hca.api->query_gid(hca.context, static_cast<uint8_t>(port), i, &gid) != 0) continue;
      std::memcpy(e.gid.data(), gid.raw, 16);
    }
    if (gid_is_zero(e.gid)) continue;
    e.type = read_line(base + "/gid_attrs/types/" + std::to_string(i));
    e.netdev = read_line(base + "/gid_attrs/ndevs/" + std::to_string(i));
    table.push_back(e);
  }
  return table;
}

// CUDA pointers can be registered with ibv_reg_mr only through the peer-memory module.
bool gpu_peer_memory_loaded() {
  return access("/sys/module/nvidia_peermem", F_OK) == 0 ||
         access("/sys/kernel/mm/memory_peers/nv_mem/version", F_OK) == 0;
}

std::optional<uint32_t> chosen_ipv4() {
  net::SocketAddress local;
  std::string why;
  if (!net::choose_local_address(&local, &why).ok() || local.family() != AF_INET) return std::nullopt;
  uint32_t address = 0;
  std::memcpy(&address, &reinterpret_cast<const sockaddr_in*>(&local.storage)->sin_addr, 4);
  return address;
}

Status choose_port_gid(Device* d) {
  if (!d->is_ethernet()) {
    d->gid_index = 0;
    ibv_gid gid{};
    if (d->hca->api->query_gid(d->hca->context, static_cast<uint8_t>(d->port), 0, &gid) == 0)
      std::memcpy(d->gid, gid.raw, 16);
    d->gid_why = "InfiniBand, LID " + std::to_string(d->port_attr.lid);
    return Status::Ok();
  }
  int64_t forced = kGidIndex.get();
  if (forced >= 0) {
    ibv_gid gid{};
    if (forced >= d->port_attr.gid_tbl_len ||
        d->hca->api->query_gid(d->hca->context, static_cast<uint8_t>(d->port),
                               static_cast<int>(forced), &gid) != 0)
      return invalid_argument("CIUIC_IB_GID_INDEX=" + std::to_string(forced) + " does not exist on " +
                              d->hca->name + " port " + std::to_string(d->port));
    d->gid_index = static_cast<int>(forced);
    std::memcpy(d->gid, gid.raw, 16);
    std::array<uint8_t, 16> g;
    std::memcpy(g.data(), gid.raw, 16);
    d->gid_why = "GID index " + std::to_string(forced) + " (" + gid_to_string(g) +
                 ", set by CIUIC_IB_GID_INDEX)";
    return Status::Ok();
  }
  std::vector<GidEntry> table = read_gid_table(*d->hca, d->port, d->port_attr.gid_tbl_len);
  int index = 0;
  CIUIC_RETURN_IF_ERROR(choose_gid(table, chosen_ipv4(), &index, &d->gid_why)
                            .prefix(d->hca->name + " port " + std::to_string(d->port)));
  for (const GidEntry& e : table)
    if (e.index == index) std::memcpy(d->gid, e.gid.data(), 16);
  d->gid_index = index;
  return Status::Ok();
}

#endif

}  // namespace

IbParams configured_params() {
  IbParams p;
  p.qps_per_conn = clamp_param(kQpsPerConn, 1, kMaxQps);
  p.traffic_class = clamp_param(kTrafficClass, 0, 255);
  p.service_level = clamp_param(kServiceLevel, 0, 15);
  p.timeout = clamp_param(kTimeout, 1, 31);
  p.retry_count = clamp_param(kRetryCount, 0, 7);
  p.bounce_bytes = static_cast<size_t>(clamp_param(kBounceBytes, 4096, 1 << 30));
  return p;
}

#if CIUIC_HAVE_VERBS_H

Hca::~Hca() {
  cache.reset();  // deregisters what it holds, before the PD goes
  if (pd != nullptr) api->dealloc_pd(pd);
  if (context != nullptr) api->close_device(context);
}

std::string Device::describe() const {
  return hca->name + ":" + std::to_string(port) + (is_ethernet() ? " (RoCE, " : " (IB, ") +
         gid_why + ")";
}

Status discover_devices(const VerbsApi* api, std::vector<std::shared_ptr<Device>>* out) {
  out->clear();
  HcaSpec spec;
  CIUIC_RETURN_IF_ERROR(parse_hca_spec(kHca.get(), &spec));
  int count = 0;
  ibv_device** list = api->get_device_list(&count);
  if (list == nullptr || count == 0) {
    if (list != nullptr) api->free_device_list(list);
    return unsupported("no RDMA device found (ibv_get_device_list listed none: no adapter, "
                       "no provider package, or no rdma_rxe/siw link configured)");
  }
  std::string skipped;
  size_t keep_bytes = static_cast<size_t>(clamp_param(kRegCacheMb, 0, 1 << 20)) << 20;
  for (int i = 0; i < count; ++i) {
    std::string name = api->get_device_name(list[i]);
    auto hca = std::make_shared<Hca>();
    hca->api = api;
    hca->name = name;
    hca->context = api->open_device(list[i]);
    if (hca->context == nullptr) {
      skipped += "; " + name + ": cannot open (" + std::strerror(errno) + ")";
      continue;
    }
    if (api->query_device(hca->context, &hca->attr) != 0) {
      skipped += "; " + name + ": ibv_query_device failed";
      continue;
    }
    std::vector<std::shared_ptr<Device>> ports;
    for (int port = 1; port <= hca->attr.phys_port_cnt; ++port) {
      if (!spec.matches(name, port)) {
        skipped += "; " + name + ":" + std::to_string(port) + " not in CIUIC_IB_HCA";
        continue;
      }
      auto d = std::make_shared<Device>();
      d->hca = hca;
      d->port = port;
      if (api->query_port(hca->context, static_cast<uint8_t>(port), &d->port_attr) != 0) {
        skipped += "; " + name + ":" + std::to_string(port) + " cannot be queried";
        continue;
      }
      if (d->port_attr.state != IBV_PORT_ACTIVE) {
        skipped += "; " + name + ":" + std::to_string(port) + " is not active (state " +
                   std::to_string(d->port_attr.state) + ")";
        continue;
      }
      if (d->port_attr.link_layer != IBV_LINK_LAYER_ETHERNET &&
          d->port_attr.link_layer != IBV_LINK_LAYER_INFINIBAND &&
          d->port_attr.link_layer != IBV_LINK_LAYER_UNSPECIFIED) {
        skipped += "; " + name + ":" + std::to_string(port) + " has an unknown link layer";
        continue;
      }
      Status g = choose_port_gid(d.get());
      if (!g.ok()) {
        skipped += "; " + g.message();
        continue;
      }
      ports.push_back(std::move(d));
    }
    if (ports.empty()) continue;
    hca->pd = api->alloc_pd(hca->context);
    if (hca->pd == nullptr) {
      skipped += "; " + name + ": ibv_alloc_pd failed";
      continue;
    }
    Hca* raw = hca.get();
    RegistrationCache::Backend backend;
    backend.reg = [raw](uintptr_t start, size_t length, int kind, RegistrationCache::Entry* e) {
      int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
      ibv_mr* mr = raw->api->reg_mr(raw->pd, reinterpret_cast<void*>(start), length, access);
      if (mr == nullptr) {
        int err = errno;
        std::string hint = kind == kCudaMemory
                               ? " (CUDA memory needs the nvidia-peermem module, or use dmabuf)"
                               : " (is the locked-memory limit, ulimit -l, too low?)";
        return errno_error("ibv_reg_mr of " + std::to_string(length) + " bytes on " + raw->name + hint,
                           err);
      }
      e->handle = mr;
      e->lkey = mr->lkey;
      e->rkey = mr->rkey;
      return Status::Ok();
    };
    backend.dereg = [raw](RegistrationCache::Entry* e) {
      raw->api->dereg_mr(static_cast<ibv_mr*>(e->handle));
    };
    hca->cache = std::make_unique<RegistrationCache>(std::move(backend), keep_bytes);
    for (auto& d : ports) {
      DeviceProperties& p = d->props;
      p.name = name;
      p.port = d->port;
      char resolved[PATH_MAX];
      std::string sys = "/sys/class/infiniband/" + name + "/device";
      p.pci_path = realpath(sys.c_str(), resolved) != nullptr ? resolved : "";
      p.guid = be64toh(api->get_device_guid(list[i]));
      p.speed_mbps = port_speed_mbps(d->port_attr.active_speed, d->port_attr.active_width);
      p.pointer_support = kHostMemory | (api->reg_dmabuf_mr != nullptr ? kDmabufMemory : 0) |
                          (gpu_peer_memory_loaded() ? kCudaMemory : 0);
      p.max_recvs = kMaxGroupedRecvs;
      p.max_requests = kMaxRequests;
      p.max_comms = hca->attr.max_qp > 0 ? hca->attr.max_qp : 65536;
      // A send is cut into at most kMaxWrsPerSend work requests of the port's max_msg_sz.
      p.max_message_bytes = std::min<size_t>(size_t{d->port_attr.max_msg_sz} * kMaxWrsPerSend,
                                             size_t{1} << 40);
      p.registration_is_global = true;
      p.force_flush = false;
      CIUIC_LOG_INFO(log::kNet, "ibverbs device %s: %s, MTU %s, %d Mb/s", d->describe().c_str(),
                     d->is_ethernet() ? "Ethernet" : "InfiniBand",
                     mtu_text(d->port_attr.active_mtu), p.speed_mbps);
      out->push_back(std::move(d));
    }
  }
  api->free_device_list(list);
  if (out->empty())
    return unsupported("no usable RDMA port among " + std::to_string(count) + " device(s)" + skipped);
  return Status::Ok();
}

#endif

}  // namespace ciuic::transport::ib
