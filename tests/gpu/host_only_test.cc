// A process that never touches CUDA keeps it that way: host collectives in the CUDA build
// neither load libcuda.so.1 nor need a GPU driver (CI runs this on machines without one).
#include <dlfcn.h>

#include <cstdio>
#include <vector>

#include "gpu_test.h"

int main() {
  using namespace ciuic::gputest;
  Tally tally;
  std::vector<ciuic_comm_t> comms = make_comms(2, tally);
  if (comms.empty()) return tally.finish("gpu_host_only_test");
  ciuic::testing::run_threads(2, [&](int rank) {
    std::vector<float> send(1000, static_cast<float>(rank + 1)), recv(1000, 0.0f);
    CIUIC_EXPECT(tally, comms[rank],
                 ciuic_allreduce(send.data(), recv.data(), 1000, CIUIC_FLOAT32, CIUIC_SUM,
                                 comms[rank], nullptr));
    tally.check(recv[0] == 3.0f && recv[999] == 3.0f, "rank %d: host allreduce gave %g", rank,
                recv[0]);
  });
  destroy_comms(comms);
  void* libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  tally.check(libcuda == nullptr, "host-only collectives loaded libcuda.so.1");
  return tally.finish("gpu_host_only_test");
}
