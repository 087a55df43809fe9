// The CPU-only build's side of cuda/device.h: place() already refuses CUDA buffers and
// streams here, so these are never reached with work to do.
#include "cuda/device.h"

#if !CIUIC_HAVE_CUDA

namespace ciuic::cuda {

struct DeviceOp {};
class Engine {};

CommState::CommState() = default;
CommState::~CommState() = default;

Status CommState::issue(const std::shared_ptr<core::Communicator>&,
                        const coll::CollectiveArgs& args, const coll::Buffers&, const Placement&,
                        std::shared_ptr<DeviceOp>*) {
  return unsupported(std::string(coll::collective_name(args.collective)) +
                     ": this build of ciuic has no CUDA support");
}
Status CommState::issue_group(const std::shared_ptr<core::Communicator>&, std::vector<GroupPart>&) {
  return unsupported("send/recv group: this build of ciuic has no CUDA support");
}
Status CommState::flush() { return Status::Ok(); }
void CommState::abort() {}

Status wait(const std::shared_ptr<DeviceOp>&) {
  return unsupported("this build of ciuic has no CUDA support");
}
Status test(const std::shared_ptr<DeviceOp>&, bool* done) {
  *done = true;
  return unsupported("this build of ciuic has no CUDA support");
}
std::shared_ptr<DeviceOp> pending_op() { return std::make_shared<DeviceOp>(); }
void fail(const std::shared_ptr<DeviceOp>&, const Status&) {}

}  // namespace ciuic::cuda

#endif  // !CIUIC_HAVE_CUDA
