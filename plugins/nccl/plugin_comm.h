// The objects the plugin hands to NCCL as opaque pointers: send/recv comms (one transport
// channel each), their request pools, and memory handles.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "plugins/nccl/nccl_net_abi.h"
#include "transports/transport.h"

namespace ciuic::nccl_plugin {

// First word of every object given to NCCL; checked before use.
enum Magic : uint32_t {
  kContextMagic = 0x43435458,  // "CCTX"
  kListenMagic = 0x434c5354,   // "CLST"
  kSendMagic = 0x43534e44,     // "CSND"
  kRecvMagic = 0x43524356,     // "CRCV"
  kRegionMagic = 0x434d5248,   // "CMRH"
  kRequestMagic = 0x43524551,  // "CREQ"
  kDeadMagic = 0xdeadc0de,     // written on close, so use after close is caught
};

class DataComm;

// What NCCL holds as `request`. Lives in its comm's pool, so no allocation per operation.
struct PluginRequest {
  uint32_t magic = kRequestMagic;
  DataComm* comm = nullptr;
  transport::Request* inner = nullptr;
  int buffers = 0;  // 1 for a send; n for a grouped receive or flush
  bool in_use = false;
};

// What NCCL holds as `mhandle`.
struct PluginRegion {
  uint32_t magic = kRegionMagic;
  std::unique_ptr<transport::MemoryRegion> region;
};

// A send comm or a recv comm: one unidirectional transport channel.
class DataComm {
 public:
  DataComm(std::unique_ptr<transport::SendChannel> channel, int max_recvs);
  DataComm(std::unique_ptr<transport::RecvChannel> channel, int max_recvs);
  DataComm(const DataComm&) = delete;
  DataComm& operator=(const DataComm&) = delete;
  ~DataComm();

  bool is_send() const { return send_ != nullptr; }
  transport::SendChannel* send_channel() const { return send_.get(); }
  transport::RecvChannel* recv_channel() const { return recv_.get(); }
  transport::Channel* channel() const;
  int max_recvs() const { return max_recvs_; }

  // Guards the pool and the channel's data path.
  std::mutex& mutex() { return mutex_; }
  // A free request slot, or nullptr when all are in flight (the caller answers "retry").
  PluginRequest* acquire();
  void release(PluginRequest* request);

  // Errors of one comm are logged at WARN once; NCCL usually polls many requests after it.
  bool first_failure() { return !std::exchange(failure_reported_, true); }

  uint32_t magic;

 private:
  void init_pool();

  std::mutex mutex_;
  std::unique_ptr<transport::SendChannel> send_;
  std::unique_ptr<transport::RecvChannel> recv_;
  int max_recvs_;
  bool failure_reported_ = false;
  std::vector<PluginRequest> pool_;  // never resized: NCCL holds pointers into it
  std::vector<PluginRequest*> free_;
};

}  // namespace ciuic::nccl_plugin
