// Every collective x datatype x op x size {0, 1, 7, 1 MiB + 3 elements} on device buffers,
// out of place and in place (both spellings where they differ), with ranks as threads on
// one GPU, each on its own stream. Results are compared bit for bit with
// tests/support/reference (double or wrapping 64-bit arithmetic, not ciuic's kernels).
// The staging chunk is 256 KiB here, so the large sizes run several chunks through fewer
// slots than chunks (slot reuse) and every n-row layout. Both paths run: same-node CUDA IPC
// (the ranks, threads of one process, use each other's buffers directly) and staging.
#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "collective_cases.h"

namespace ciuic::gputest {
namespace {

void run_matrix(int n, Tally& tally) {
  std::vector<ciuic_comm_t> comms = make_comms(n, tally);
  if (comms.empty()) return;
  const std::vector<Case> cases = all_cases();
  Barrier barrier(n);
  testing::run_threads(n, [&](int rank) {
    GPU_OK(tally, cudaSetDevice(0));
    RankBuffers b;
    b.bytes = ((size_t{1} << 20) + 3 * 8) * static_cast<size_t>(n);
    GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&b.send), b.bytes));
    GPU_OK(tally, cudaMalloc(reinterpret_cast<void**>(&b.recv), b.bytes));
    GPU_OK(tally, cudaStreamCreateWithFlags(&b.stream, cudaStreamNonBlocking));
    barrier.wait();
    for (const Case& c : cases) run_case(c, rank, n, comms[rank], b, tally);
    barrier.wait();
    cudaStreamDestroy(b.stream);
    cudaFree(b.send);
    cudaFree(b.recv);
  });
  destroy_comms(comms);
  std::printf("%d ranks: %zu cases\n", n, cases.size());
  std::fflush(stdout);
}

}  // namespace
}  // namespace ciuic::gputest

// gpu_collectives_test [N ...] [ipc|staging ...]: rank counts (default 2 4) and paths
// (default both): ipc is same-node CUDA IPC, ranks of one process using each other's buffers
// as they are (CIUIC_CUDA_IPC=require); staging is the path through pinned host memory.
int main(int argc, char** argv) {
  using namespace ciuic::gputest;
  if (int s = skip_without_gpu("gpu_collectives_test")) return s;
  ciuic::testing::ScopedConfig chunk("CIUIC_CUDA_CHUNK_BYTES", "256K");
  Tally tally;
  std::vector<int> rank_counts;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    if (std::isdigit(static_cast<unsigned char>(argv[i][0])))
      rank_counts.push_back(std::atoi(argv[i]));
    else
      paths.push_back(argv[i]);
  }
  if (rank_counts.empty()) rank_counts = {2, 4};
  if (paths.empty()) paths = {"ipc", "staging"};
  for (const std::string& path : paths) {
    ciuic::testing::ScopedConfig ipc("CIUIC_CUDA_IPC", path == "ipc" ? "require" : "off");
    std::printf("path %s:\n", path.c_str());
    for (int n : rank_counts) run_matrix(n, tally);
  }
  return tally.finish("gpu_collectives_test");
}
