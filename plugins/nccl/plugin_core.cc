// Plugin lifecycle, device properties and connection setup.
#include "plugins/nccl/plugin_core.h"

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string_view>

#include "base/config.h"
#include "base/log.h"
#include "plugins/nccl/plugin_comm.h"

namespace ciuic::nccl_plugin {
namespace {

const config::StringParam kNetTransport{
    "CIUIC_NET_TRANSPORT", "auto",
    "Transport of the NCCL net plugin: auto (the first that works here) or a name (tcp)"};
const config::IntParam kNetSpeedMbps{
    "CIUIC_NET_SPEED_MBPS", 0,
    "Link speed the NCCL plugin reports, in Mb/s; 0: the device's own (loopback: 400000; "
    "10000 where the kernel reports none, e.g. a virtual interface)"};

// NCCL sizes its channel count from the reported speed. Loopback has no wire: its limit is
// the cores' copies, which the TCP transport's I/O threads take to 24 GB/s (190 Gb/s) on a
// 32-core host, so it is reported as a link of that class. At 10 Gb/s NCCL would open two
// channels, and two channels cap it near 9.5 GB/s (docs/nccl-plugin.md).
constexpr int kLoopbackSpeedMbps = 400000;
constexpr int kUnknownSpeedMbps = 10000;  // what NCCL's own Socket transport assumes

bool is_loopback_interface(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) return false;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq request{};
  std::memcpy(request.ifr_name, name.c_str(), name.size());
  const bool loopback =
      ::ioctl(fd, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_LOOPBACK) != 0;
  ::close(fd);
  return loopback;
}

// Where the transport knows no speed this asks the kernel (an ioctl), so it runs once per
// device when init enumerates them; CIUIC_NET_SPEED_MBPS is read then, with the other settings.
int reported_speed_mbps(const transport::DeviceProperties& d) {
  const int64_t forced = kNetSpeedMbps.get();
  if (forced > 0 && forced <= INT32_MAX) return static_cast<int>(forced);
  if (d.speed_mbps > 0) return d.speed_mbps;
  return is_loopback_interface(d.name) ? kLoopbackSpeedMbps : kUnknownSpeedMbps;
}

// One per NCCL communicator (v11), or the one shared context of NCCL before 2.28.
struct Context {
  uint32_t magic = kContextMagic;
  uint64_t comm_id = 0;
  int traffic_class = NCCL_NET_TRAFFIC_CLASS_UNDEF;

  // NCCL retries connect() with the same handle buffer until it yields a comm, so a
  // connection in progress is found again by that buffer's address; the copied bytes
  // tell a retry from a new connection that happens to reuse the buffer.
  struct PendingConnect {
    transport::ConnectHandle handle;
    int dev = 0;
    std::unique_ptr<transport::Connector> connector;
  };
  std::mutex mutex;
  std::map<const void*, PendingConnect> pending;
};

struct ListenComm {
  uint32_t magic = kListenMagic;
  int max_recvs = 1;
  std::unique_ptr<transport::Listener> listener;
};

struct GlobalState {
  std::mutex mutex;
  int references = 0;  // live contexts (v11) plus the legacy context
  std::unique_ptr<transport::Transport> transport;
  // As the transport describes them, but speed_mbps is what NCCL is told (reported_speed_mbps).
  std::vector<transport::DeviceProperties> devices;
  std::set<Context*> contexts;
  Context* legacy = nullptr;
  // Strings handed to NCCL in properties stay valid as long as the library is loaded.
  std::deque<std::string> interned;
};

// Never destroyed: a call arriving during process teardown finds valid (empty) state.
// ~Unloader below releases what the state holds when the library is unloaded.
GlobalState& global() {
  static GlobalState* state = new GlobalState();
  return *state;
}

std::atomic<ncclDebugLogger_t> nccl_logger{nullptr};

// ciuic's log sink while loaded by NCCL: every message goes through NCCL's logger, which
// applies NCCL_DEBUG / NCCL_DEBUG_SUBSYS.
void forward_to_nccl(log::Level level, uint32_t subsys, const char* file, int line,
                     const char* message) {
  ncclDebugLogger_t logger = nccl_logger.load();
  if (logger == nullptr) {
    if (level == log::Level::kWarn) std::fprintf(stderr, "NET/ciuic : %s\n", message);
    return;
  }
  ncclDebugLogLevel nccl_level = level == log::Level::kWarn   ? NCCL_LOG_WARN
                                 : level == log::Level::kInfo ? NCCL_LOG_INFO
                                                              : NCCL_LOG_TRACE;
  // INIT messages also carry NCCL_INIT, which NCCL_DEBUG=INFO shows by default.
  unsigned long flags = subsys == log::kInit ? (NCCL_INIT | NCCL_NET) : NCCL_NET;
  logger(nccl_level, flags, file, line, "NET/ciuic : %s", message);
}

const char* intern(GlobalState& g, const std::string& text) {
  for (const std::string& s : g.interned)
    if (s == text) return s.c_str();
  g.interned.push_back(text);
  return g.interned.back().c_str();
}

// NCCL drives every connection from one proxy thread. With the TCP transport's defaults
// that thread copies every byte itself, so where cores are to spare each channel gets
// I/O threads, and pieces small enough that NCCL's 512 KiB steps are striped over the
// sockets (measured in docs/nccl-plugin.md). What the user set wins.
constexpr int kCoresForTcpThreads = 8;
constexpr const char* kPluginTcpThreads = "3";
constexpr const char* kPluginMinStripeBytes = "64K";

// Returns the line to log if the transport turns out to be TCP.
std::string choose_tcp_defaults() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int cores = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  const bool spare = cores >= kCoresForTcpThreads;
  const config::Param* threads = config::find_param("CIUIC_TCP_THREADS");
  const config::Param* min_stripe = config::find_param("CIUIC_TCP_MIN_STRIPE_BYTES");
  if (threads == nullptr) return "";  // no TCP transport in this build
  // A first init after the last finalize reads the environment afresh: forget the
  // choices made for the previous generation of communicators.
  static bool overridden = false;
  if (overridden) {
    config::set_override("CIUIC_TCP_THREADS", std::nullopt);
    config::set_override("CIUIC_TCP_MIN_STRIPE_BYTES", std::nullopt);
    overridden = false;
  }
  config::reload_environment();
  const bool chosen = !threads->is_set();
  if (chosen) {
    overridden = true;
    config::set_override("CIUIC_TCP_THREADS", spare ? kPluginTcpThreads : "0");
    if (spare && min_stripe != nullptr && !min_stripe->is_set())
      config::set_override("CIUIC_TCP_MIN_STRIPE_BYTES", kPluginMinStripeBytes);
  }
  return "TCP: " + threads->current_text() + " I/O thread(s) per channel, minimum piece " +
         (min_stripe != nullptr ? min_stripe->current_text() : "?") + " (" +
         (chosen
              ? (spare ? "chosen for a host with >= 8 cores" : "chosen for a host with < 8 cores")
              : "set by CIUIC_TCP_THREADS") +
         ")";
}

Status acquire_locked(GlobalState& g, ncclDebugLogger_t logger) {
  if (logger != nullptr) nccl_logger.store(logger);
  log::set_sink(&forward_to_nccl);
  if (g.references > 0) {
    ++g.references;
    return Status::Ok();
  }
  // Under NCCL, NCCL_DEBUG decides what is shown: pass INFO on unless CIUIC_DEBUG says
  // otherwise. Set before the first message, when the level is read.
  if (const config::Param* level = config::find_param("CIUIC_DEBUG");
      level != nullptr && !level->is_set())
    config::set_override("CIUIC_DEBUG", "INFO");

  const std::string tcp_settings = choose_tcp_defaults();
  std::string name = kNetTransport.get();
  std::string why;
  std::unique_ptr<transport::Transport> t;
  CIUIC_RETURN_IF_ERROR(transport::create_transport(name, transport::TransportOptions{}, &t, &why)
                            .prefix("CIUIC_NET_TRANSPORT=" + name));
  std::vector<transport::DeviceProperties> props(std::max(t->device_count(), 0));
  for (size_t i = 0; i < props.size(); ++i) {
    CIUIC_RETURN_IF_ERROR(t->device_properties(static_cast<int>(i), &props[i]));
    props[i].speed_mbps = reported_speed_mbps(props[i]);
  }
  if (props.empty())
    return unsupported(std::string("transport ") + t->name() +
                       " has no usable device (check CIUIC_SOCKET_IFNAME)");
  CIUIC_LOG_INFO(log::kInit, "ciuic %d.%d.%d, transport %s: %s; %zu device(s), first %s",
                 CIUIC_VERSION_MAJOR, CIUIC_VERSION_MINOR, CIUIC_VERSION_PATCH, t->name(),
                 why.c_str(), props.size(), props[0].name.c_str());
  if (std::string_view(t->name()) == "tcp" && !tcp_settings.empty())
    CIUIC_LOG_INFO(log::kInit, "%s", tcp_settings.c_str());
  g.transport = std::move(t);
  g.devices = std::move(props);
  g.references = 1;
  return Status::Ok();
}

void release_locked(GlobalState& g) {
  if (g.references <= 0 || --g.references > 0) return;
  // The last communicator is gone: nothing of ours may outlive it (NCCL may dlclose us).
  g.transport.reset();
  g.devices.clear();
  CIUIC_LOG_INFO(log::kInit, "last context finalized; transport closed");
}

Context* find_context(GlobalState& g, void* ctx) {
  if (ctx == nullptr) return g.legacy;
  auto* c = static_cast<Context*>(ctx);
  return g.contexts.count(c) != 0 ? c : nullptr;
}

Status check_device_locked(const GlobalState& g, int dev) {
  if (g.references == 0 || !g.transport)
    return invalid_argument("the plugin is not initialized (init() not called or finalized)");
  if (dev < 0 || dev >= static_cast<int>(g.devices.size()))
    return invalid_argument("device " + std::to_string(dev) + " does not exist (" +
                            std::to_string(g.devices.size()) + " device(s))");
  return Status::Ok();
}

int clamped_max_recvs(const transport::DeviceProperties& d) {
  return std::clamp(d.max_recvs, 1, transport::kMaxGroupedRecvs);
}

// Releases the shared context of NCCL before 2.28 when the library is unloaded.
struct Unloader {
  ~Unloader() {
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    if (g.legacy != nullptr) {
      delete g.legacy;
      g.legacy = nullptr;
      release_locked(g);
    }
  }
} unloader;

}  // namespace

ncclResult_t report(const Status& status, const char* operation) {
  CIUIC_LOG_WARN(log::kNet, "%s failed: %s", operation, status.message().c_str());
  return report_quietly(status);
}

ncclResult_t report_quietly(const Status& status) {
  switch (status.code()) {
    case CIUIC_SUCCESS: return ncclSuccess;
    case CIUIC_ERR_INVALID_ARGUMENT: return ncclInvalidArgument;
    case CIUIC_ERR_SYSTEM: return ncclSystemError;
    case CIUIC_ERR_REMOTE:
    case CIUIC_ERR_TIMEOUT: return ncclRemoteError;
    case CIUIC_ERR_UNSUPPORTED: return ncclInvalidUsage;
    default: return ncclInternalError;
  }
}

ncclResult_t init_context(void** ctx, uint64_t comm_id, int traffic_class,
                          ncclDebugLogger_t logger) {
  return guarded("init", [&] {
    if (ctx == nullptr) return report(invalid_argument("ctx is NULL"), "init");
    *ctx = nullptr;
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    Status s = acquire_locked(g, logger);
    if (!s.ok()) return report(s, "init");
    auto c = std::make_unique<Context>();
    c->comm_id = comm_id;
    c->traffic_class = traffic_class;
    g.contexts.insert(c.get());
    CIUIC_LOG_TRACE(log::kInit, "context for communicator %016llx (%d active references)",
                    static_cast<unsigned long long>(comm_id), g.references);
    *ctx = c.release();
    return ncclSuccess;
  });
}

ncclResult_t finalize_context(void* ctx) {
  return guarded("finalize", [&] {
    if (ctx == nullptr) return ncclSuccess;  // NCCL finalizes even after a failed init
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    auto* c = static_cast<Context*>(ctx);
    if (g.contexts.erase(c) == 0)
      return report(invalid_argument("unknown or already finalized context"), "finalize");
    delete c;
    release_locked(g);
    return ncclSuccess;
  });
}

ncclResult_t init_legacy(ncclDebugLogger_t logger) {
  return guarded("init", [&] {
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    if (g.legacy != nullptr) {
      if (logger != nullptr) nccl_logger.store(logger);
      return ncclSuccess;
    }
    Status s = acquire_locked(g, logger);
    if (!s.ok()) return report(s, "init");
    g.legacy = new Context();
    return ncclSuccess;
  });
}

ncclResult_t devices(int* ndev) {
  return guarded("devices", [&] {
    if (ndev == nullptr) return report(invalid_argument("ndev is NULL"), "devices");
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    if (g.references == 0)
      return report(invalid_argument("called before init()"), "devices");
    *ndev = static_cast<int>(g.devices.size());
    return ncclSuccess;
  });
}

ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props) {
  return guarded("getProperties", [&] {
    if (props == nullptr) return report(invalid_argument("props is NULL"), "getProperties");
    GlobalState& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    Status s = check_device_locked(g, dev);
    if (!s.ok()) return report(s, "getProperties");
    const transport::DeviceProperties& d = g.devices[dev];
    std::memset(props, 0, sizeof(*props));
    props->name = const_cast<char*>(intern(g, d.name.empty() ? "ciuic" + std::to_string(dev) : d.name));
    props->pciPath = d.pci_path.empty() ? nullptr : const_cast<char*>(intern(g, d.pci_path));
    props->guid = d.guid != 0 ? d.guid : static_cast<uint64_t>(dev);
    // Host memory only: regMr refuses GPU pointers and regMrDmaBuf is absent, so NCCL
    // stages GPU data through host buffers.
    props->ptrSupport = NCCL_PTR_HOST;
    props->regIsGlobal = d.registration_is_global ? 1 : 0;
    props->forceFlush = 0;  // flushes matter only for GPUDirect receives
    props->speed = d.speed_mbps;
    props->port = d.port;
    props->latency = d.latency_us;
    props->maxComms = d.max_comms > 0 ? d.max_comms : 65536;
    props->maxRecvs = clamped_max_recvs(d);
    props->netDeviceType = NCCL_NET_DEVICE_HOST;
    props->netDeviceVersion = NCCL_NET_DEVICE_INVALID_VERSION;
    props->vProps.ndevs = 1;
    props->vProps.devs[0] = dev;
    size_t max_bytes = d.max_message_bytes > 0 ? std::min(d.max_message_bytes, kMaxTransferBytes)
                                               : kMaxTransferBytes;
    props->maxP2pBytes = max_bytes;
    props->maxCollBytes = max_bytes;
    props->maxMultiRequestSize = 1;
    return ncclSuccess;
  });
}

ncclResult_t listen(void* ctx, int dev, void* handle, void** listen_comm) {
  return guarded("listen", [&] {
    if (handle == nullptr || listen_comm == nullptr)
      return report(invalid_argument("handle or listenComm is NULL"), "listen");
    *listen_comm = nullptr;
    GlobalState& g = global();
    auto comm = std::make_unique<ListenComm>();
    {
      std::lock_guard<std::mutex> lock(g.mutex);
      if (find_context(g, ctx) == nullptr)
        return report(invalid_argument("unknown context (init() not called?)"), "listen");
      Status s = check_device_locked(g, dev);
      if (s.ok()) s = g.transport->listen(dev, &comm->listener);
      if (!s.ok()) return report(s, ("listen on device " + std::to_string(dev)).c_str());
      comm->max_recvs = clamped_max_recvs(g.devices[dev]);
    }
    static_assert(sizeof(transport::ConnectHandle) <= NCCL_NET_HANDLE_MAXSIZE);
    std::memcpy(handle, comm->listener->handle().bytes, sizeof(transport::ConnectHandle));
    *listen_comm = comm.release();
    return ncclSuccess;
  });
}

ncclResult_t connect(void* ctx, int dev, void* handle, void** send_comm) {
  return guarded("connect", [&] {
    if (handle == nullptr || send_comm == nullptr)
      return report(invalid_argument("handle or sendComm is NULL"), "connect");
    *send_comm = nullptr;
    GlobalState& g = global();
    Context* c = nullptr;
    transport::Transport* t = nullptr;
    int max_recvs = 1;
    {
      std::lock_guard<std::mutex> lock(g.mutex);
      c = find_context(g, ctx);
      if (c == nullptr)
        return report(invalid_argument("unknown context (init() not called?)"), "connect");
      Status s = check_device_locked(g, dev);
      if (!s.ok()) return report(s, "connect");
      t = g.transport.get();  // lives while the context does
      max_recvs = clamped_max_recvs(g.devices[dev]);
    }
    std::lock_guard<std::mutex> lock(c->mutex);
    auto it = c->pending.find(handle);
    if (it != c->pending.end() &&
        (it->second.dev != dev ||
         std::memcmp(it->second.handle.bytes, handle, sizeof(transport::ConnectHandle)) != 0)) {
      c->pending.erase(it);  // the buffer now holds another peer's handle
      it = c->pending.end();
    }
    if (it == c->pending.end()) {
      Context::PendingConnect p;
      std::memcpy(p.handle.bytes, handle, sizeof(p.handle.bytes));
      p.dev = dev;
      Status s = t->connect(dev, p.handle, &p.connector);
      if (!s.ok()) return report(s, "connect");
      it = c->pending.emplace(handle, std::move(p)).first;
    }
    std::unique_ptr<transport::SendChannel> channel;
    Status s = it->second.connector->progress(&channel);
    if (!s.ok()) {
      c->pending.erase(it);
      return report(s, "connect");
    }
    if (channel == nullptr) return ncclSuccess;  // not yet: NCCL calls again
    c->pending.erase(it);
    CIUIC_LOG_TRACE(log::kNet, "connected to %s", channel->peer_description().c_str());
    *send_comm = new DataComm(std::move(channel), max_recvs);
    return ncclSuccess;
  });
}

ncclResult_t accept(void* listen_comm, void** recv_comm) {
  return guarded("accept", [&] {
    auto* l = static_cast<ListenComm*>(listen_comm);
    if (l == nullptr || l->magic != kListenMagic || recv_comm == nullptr)
      return report(invalid_argument("not a listen comm, or recvComm is NULL"), "accept");
    *recv_comm = nullptr;
    std::unique_ptr<transport::RecvChannel> channel;
    Status s = l->listener->accept(&channel);
    if (!s.ok()) return report(s, "accept");
    if (channel == nullptr) return ncclSuccess;  // not yet: NCCL calls again
    CIUIC_LOG_TRACE(log::kNet, "accepted %s", channel->peer_description().c_str());
    *recv_comm = new DataComm(std::move(channel), l->max_recvs);
    return ncclSuccess;
  });
}

ncclResult_t close_listen(void* listen_comm) {
  return guarded("closeListen", [&] {
    if (listen_comm == nullptr) return ncclSuccess;
    auto* l = static_cast<ListenComm*>(listen_comm);
    if (l->magic != kListenMagic)
      return report(invalid_argument("not a listen comm (closed twice?)"), "closeListen");
    l->magic = kDeadMagic;
    delete l;
    return ncclSuccess;
  });
}

}  // namespace ciuic::nccl_plugin
