#include "plugins/nccl/plugin_comm.h"

namespace ciuic::nccl_plugin {
namespace {

// Request slots per comm: the transport refuses more than its max_requests (32) sends or
// receives in flight, flushes come on top, and running out only means "retry" for
// isend/irecv. Four times NCCL's limit leaves room for a transport that accepts more.
constexpr size_t kPoolSize = 4 * NCCL_NET_MAX_REQUESTS;

}  // namespace

DataComm::DataComm(std::unique_ptr<transport::SendChannel> channel, int max_recvs)
    : magic(kSendMagic), send_(std::move(channel)), max_recvs_(max_recvs) {
  init_pool();
}

DataComm::DataComm(std::unique_ptr<transport::RecvChannel> channel, int max_recvs)
    : magic(kRecvMagic), recv_(std::move(channel)), max_recvs_(max_recvs) {
  init_pool();
}

DataComm::~DataComm() {
  // Requests still in flight die with the channel; poison them so a late test() is caught.
  for (PluginRequest& r : pool_) r.magic = kDeadMagic;
  magic = kDeadMagic;
}

void DataComm::init_pool() {
  pool_.resize(kPoolSize);
  free_.reserve(kPoolSize);
  for (PluginRequest& r : pool_) {
    r.comm = this;
    free_.push_back(&r);
  }
}

transport::Channel* DataComm::channel() const {
  if (send_) return send_.get();
  return recv_.get();
}

PluginRequest* DataComm::acquire() {
  if (free_.empty()) return nullptr;
  PluginRequest* r = free_.back();
  free_.pop_back();
  r->in_use = true;
  r->inner = nullptr;
  r->buffers = 0;
  return r;
}

void DataComm::release(PluginRequest* request) {
  request->in_use = false;
  request->inner = nullptr;
  free_.push_back(request);
}

}  // namespace ciuic::nccl_plugin
