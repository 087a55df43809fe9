// libnccl-net-ciuic.so seen the way NCCL sees it: dlopen, dlsym of ncclNetPlugin_vN, and
// NCCL's call sequences (per-communicator init, properties, non-blocking connection
// setup polled from two threads, registration, grouped tagged transfers, close,
// finalize). Traffic stays on loopback (CIUIC_SOCKET_IFNAME=lo from ctest).
#include <sched.h>

#include <cstdlib>
#include <cstring>

#include "unit/nccl_plugin_stream.h"

namespace ciuic::nccl_plugin_test {
namespace {

class NcclPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin reads its own environment: keep its traffic on loopback whatever the
    // runner passed.
    setenv("CIUIC_SOCKET_IFNAME", "lo", 1);
    ASSERT_NE(lib_.handle(), nullptr) << "dlopen " << CIUIC_NCCL_PLUGIN_PATH << ": " << dlerror();
    v11_ = lib_.table<ncclNet_v11_t>("ncclNetPlugin_v11");
    v8_ = lib_.table<ncclNet_v8_t>("ncclNetPlugin_v8");
    ASSERT_NE(v11_, nullptr);
    ASSERT_NE(v8_, nullptr);
  }

  // init as NCCL 2.28 does for one communicator.
  void* init_v11(uint64_t comm_id = 0x1234) {
    ncclNetCommConfig_v11_t config{NCCL_NET_TRAFFIC_CLASS_UNDEF};
    void* ctx = nullptr;
    EXPECT_EQ(v11_->init(&ctx, comm_id, &config, capture_logger, nullptr), ncclSuccess)
        << all_logged();
    EXPECT_NE(ctx, nullptr);
    return ctx;
  }

  PluginLibrary lib_;
  const ncclNet_v11_t* v11_ = nullptr;
  const ncclNet_v8_t* v8_ = nullptr;
};

// The data-path scenarios run with the TCP transport's bytes moved on NCCL's calling
// thread (CIUIC_TCP_THREADS=0) and on the transport's I/O threads, with pieces small
// enough that most transfers are striped.
class NcclPluginIoTest : public NcclPluginTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    setenv("CIUIC_TCP_THREADS", std::to_string(GetParam()).c_str(), 1);
    if (GetParam() > 0) setenv("CIUIC_TCP_MIN_STRIPE_BYTES", "16K", 1);
    NcclPluginTest::SetUp();
  }
  void TearDown() override {
    unsetenv("CIUIC_TCP_THREADS");
    unsetenv("CIUIC_TCP_MIN_STRIPE_BYTES");
  }
};

INSTANTIATE_TEST_SUITE_P(Io, NcclPluginIoTest, ::testing::Values(0, 3),
                         [](const ::testing::TestParamInfo<int>& param) {
                           return param.param == 0 ? std::string("Inline")
                                                  : "Threads" + std::to_string(param.param);
                         });

bool logged_info(const std::string& needle) {
  std::lock_guard<std::mutex> lock(log_mutex());
  for (const LogLine& l : log_lines())
    if (l.level == NCCL_LOG_INFO && l.text.find(needle) != std::string::npos) return true;
  return false;
}

TEST_F(NcclPluginTest, TcpThreadsFollowTheCoreCountUnlessSet) {
  unsetenv("CIUIC_TCP_THREADS");
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  ASSERT_EQ(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
  const bool big_host = CPU_COUNT(&cpus) >= 8;
  void* ctx = init_v11();
  EXPECT_TRUE(logged_info(big_host ? "TCP: 3 I/O thread(s) per channel, minimum piece 64K"
                                   : "TCP: 0 I/O thread(s) per channel"))
      << all_logged();
  ASSERT_EQ(v11_->finalize(ctx), ncclSuccess);
  // A setting in the environment wins, read afresh by the next first init.
  setenv("CIUIC_TCP_THREADS", "2", 1);
  ctx = init_v11();
  EXPECT_TRUE(logged_info("TCP: 2 I/O thread(s) per channel") &&
              logged_info("(set by CIUIC_TCP_THREADS)"))
      << all_logged();
  ASSERT_EQ(v11_->finalize(ctx), ncclSuccess);
  unsetenv("CIUIC_TCP_THREADS");
}

// NCCL sizes its channel count from the speed: CIUIC_NET_SPEED_MBPS sets it where the
// interface's own is wrong or missing, and nonsense falls back to the interface's.
TEST_F(NcclPluginTest, SpeedOverrideIsReportedAndNonsenseIgnored) {
  for (const auto& [value, expected] :
       std::vector<std::pair<const char*, int>>{{"25000", 25000}, {"-5", 400000}, {"0", 400000}}) {
    setenv("CIUIC_NET_SPEED_MBPS", value, 1);
    void* ctx = init_v11();
    ASSERT_NE(ctx, nullptr);
    ncclNetProperties_v11_t p;
    ASSERT_EQ(v11_->getProperties(0, &p), ncclSuccess);
    EXPECT_EQ(p.speed, expected) << "CIUIC_NET_SPEED_MBPS=" << value;
    EXPECT_EQ(v11_->finalize(ctx), ncclSuccess);
  }
  unsetenv("CIUIC_NET_SPEED_MBPS");
}

TEST_F(NcclPluginTest, ExportsEveryVersionWithHostOnlyOptionalMembersNull) {
  const auto* v10 = lib_.table<ncclNet_v10_t>("ncclNetPlugin_v10");
  const auto* v9 = lib_.table<ncclNet_v9_t>("ncclNetPlugin_v9");
  ASSERT_NE(v10, nullptr);
  ASSERT_NE(v9, nullptr);
  EXPECT_STREQ(v11_->name, "ciuic");
  EXPECT_STREQ(v10->name, "ciuic");
  EXPECT_STREQ(v9->name, "ciuic");
  EXPECT_STREQ(v8_->name, "ciuic");
  EXPECT_NE(v11_->finalize, nullptr);
  EXPECT_EQ(v11_->regMrDmaBuf, nullptr);
  EXPECT_EQ(v11_->getDeviceMr, nullptr);
  EXPECT_EQ(v11_->irecvConsumed, nullptr);  // NCCL would call it for every receive
  EXPECT_EQ(v11_->makeVDevice, nullptr);
  EXPECT_EQ(v11_->setNetAttr, nullptr);
  EXPECT_EQ(v8_->irecvConsumed, nullptr);
  EXPECT_NE(v8_->iflush, nullptr);
  // ciuic's own C API, linked in, must not leak out of the plugin.
  EXPECT_EQ(dlsym(lib_.handle(), "ciuic_get_version"), nullptr);
  EXPECT_EQ(dlsym(lib_.handle(), "ncclNetPlugin_v7"), nullptr);
}

TEST_F(NcclPluginTest, PropertiesFillEveryField) {
  void* ctx = init_v11();
  int ndev = 0;
  ASSERT_EQ(v11_->devices(&ndev), ncclSuccess);
  ASSERT_GE(ndev, 1);
  for (int dev = 0; dev < ndev; ++dev) {
    ncclNetProperties_v11_t p;
    std::memset(&p, 0xa5, sizeof(p));  // what NCCL's stack may hold
    ASSERT_EQ(v11_->getProperties(dev, &p), ncclSuccess);
    ASSERT_NE(p.name, nullptr);
    EXPECT_STREQ(p.name, "lo");
    EXPECT_TRUE(p.pciPath == nullptr || std::strncmp(p.pciPath, "/sys", 4) == 0);
    EXPECT_EQ(p.ptrSupport, NCCL_PTR_HOST);
    EXPECT_TRUE(p.regIsGlobal == 0 || p.regIsGlobal == 1);
    EXPECT_EQ(p.forceFlush, 0);
    EXPECT_EQ(p.speed, 400000) << "loopback: a link of the class its copies reach";
    EXPECT_GE(p.port, 0);
    EXPECT_GE(p.latency, 0.0f);
    EXPECT_GT(p.maxComms, 0);
    EXPECT_EQ(p.maxRecvs, 8) << "the TCP transport's grouped-receive limit";
    EXPECT_EQ(p.netDeviceType, NCCL_NET_DEVICE_HOST);
    EXPECT_EQ(p.netDeviceVersion, NCCL_NET_DEVICE_INVALID_VERSION);
    EXPECT_EQ(p.vProps.ndevs, 1);
    EXPECT_EQ(p.vProps.devs[0], dev);
    EXPECT_GT(p.maxP2pBytes, 0u);
    EXPECT_LE(p.maxP2pBytes, NCCL_MAX_NET_SIZE_BYTES);
    EXPECT_LE(p.maxP2pBytes, static_cast<size_t>(INT_MAX)) << "test() reports int sizes";
    EXPECT_GT(p.maxCollBytes, 0u);
    EXPECT_LE(p.maxCollBytes, NCCL_MAX_NET_SIZE_BYTES);
    EXPECT_EQ(p.maxMultiRequestSize, 1);
  }
  ncclNetProperties_v11_t p;
  EXPECT_EQ(v11_->getProperties(ndev, &p), ncclInvalidArgument);
  EXPECT_TRUE(warned("does not exist"));
  EXPECT_EQ(v11_->finalize(ctx), ncclSuccess);

  // The v8 table: its own, shorter struct, filled completely.
  ASSERT_EQ(v8_->init(capture_logger), ncclSuccess);
  ncclNetProperties_v8_t p8;
  std::memset(&p8, 0xa5, sizeof(p8));
  ASSERT_EQ(v8_->getProperties(0, &p8), ncclSuccess);
  EXPECT_STREQ(p8.name, "lo");
  EXPECT_TRUE(p8.pciPath == nullptr || std::strncmp(p8.pciPath, "/sys", 4) == 0);
  EXPECT_EQ(p8.ptrSupport, NCCL_PTR_HOST);
  EXPECT_TRUE(p8.regIsGlobal == 0 || p8.regIsGlobal == 1);
  EXPECT_EQ(p8.speed, 400000);
  EXPECT_GE(p8.port, 0);
  EXPECT_GE(p8.latency, 0.0f);
  EXPECT_GT(p8.maxComms, 0);
  EXPECT_EQ(p8.maxRecvs, 8);
  EXPECT_EQ(p8.netDeviceType, NCCL_NET_DEVICE_HOST);
  EXPECT_EQ(p8.netDeviceVersion, 0);
}

TEST_F(NcclPluginTest, InitLogsThroughNcclsLoggerAndFinalizeNullIsSafe) {
  EXPECT_EQ(v11_->finalize(nullptr), ncclSuccess);  // NCCL does this after a failed init
  void* ctx = init_v11();
  bool init_line = false;
  {
    std::lock_guard<std::mutex> lock(log_mutex());
    for (const LogLine& l : log_lines())
      if (l.level == NCCL_LOG_INFO && (l.flags & NCCL_INIT) != 0 &&
          l.text.rfind("NET/ciuic : ", 0) == 0 && l.text.find("tcp") != std::string::npos)
        init_line = true;
  }
  EXPECT_TRUE(init_line) << "NCCL_DEBUG=INFO shows an INIT line naming the transport:\n"
                         << all_logged();
  EXPECT_EQ(v11_->finalize(ctx), ncclSuccess);
  EXPECT_EQ(v11_->finalize(ctx), ncclInvalidArgument) << "a second finalize is refused";
}

TEST_F(NcclPluginTest, UnknownTransportFailsInitCleanly) {
  setenv("CIUIC_NET_TRANSPORT", "carrier-pigeon", 1);
  void* ctx = reinterpret_cast<void*>(0x1);
  ncclNetCommConfig_v11_t config{NCCL_NET_TRAFFIC_CLASS_UNDEF};
  EXPECT_EQ(v11_->init(&ctx, 7, &config, capture_logger, nullptr), ncclInvalidArgument);
  unsetenv("CIUIC_NET_TRANSPORT");
  EXPECT_EQ(ctx, nullptr);
  EXPECT_TRUE(warned("carrier-pigeon")) << all_logged();
  EXPECT_EQ(v11_->finalize(ctx), ncclSuccess);
  // The next communicator works.
  ctx = init_v11();
  int ndev = 0;
  EXPECT_EQ(v11_->devices(&ndev), ncclSuccess);
  EXPECT_EQ(ndev, 1);
  EXPECT_EQ(v11_->finalize(ctx), ncclSuccess);
}

TEST_P(NcclPluginIoTest, ThousandsOfGroupedTransfersThroughV11) {
  NetV11 net{v11_, init_v11()};
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  StreamStats stats;
  run_stream(net, send_comm, recv_comm, make_script(3000, 8, 8 << 20, 42), &stats);
  EXPECT_EQ(stats.max_recvs_in_flight, NCCL_NET_MAX_REQUESTS);
  EXPECT_EQ(stats.max_sends_in_flight, NCCL_NET_MAX_REQUESTS);
  EXPECT_GT(stats.registrations_during_transfer, 0);
  std::printf("v11: %zu bytes, sends in flight <= %d, isend retries %d, registrations %d\n",
              stats.bytes, stats.max_sends_in_flight, stats.send_retries,
              stats.registrations_during_transfer);
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
}

TEST_P(NcclPluginIoTest, GroupedTransfersThroughV8WithIntSizes) {
  ASSERT_EQ(v8_->init(capture_logger), ncclSuccess);
  ASSERT_EQ(v8_->init(capture_logger), ncclSuccess) << "NCCL < 2.28 may init again";
  NetV8 net{v8_};
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  StreamStats stats;
  run_stream(net, send_comm, recv_comm, make_script(800, 8, 4 << 20, 7), &stats);
  EXPECT_GT(stats.bytes, 0u);
  int sizes[1] = {-5};
  void* data[1] = {nullptr};
  int tags[1] = {0};
  void* request = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(v8_->irecv(recv_comm, 1, data, sizes, tags, nullptr, &request), ncclInvalidArgument);
  EXPECT_EQ(request, nullptr);
  EXPECT_EQ(v8_->irecv(recv_comm, 9, data, sizes, tags, nullptr, &request), ncclInvalidArgument);
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
}

TEST_P(NcclPluginIoTest, SenderClosedMidTransferFailsTheReceiverPromptly) {
  NetV11 net{v11_, init_v11()};
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  const size_t size = 64u << 20;  // far more than the sockets buffer
  std::vector<char> out(size, 'x'), in(size);
  void *send_mh = nullptr, *recv_mh = nullptr;
  ASSERT_EQ(net.reg(send_comm, out.data(), size, &send_mh), ncclSuccess);
  ASSERT_EQ(net.reg(recv_comm, in.data(), size, &recv_mh), ncclSuccess);
  void* recv_request = nullptr;
  void* data[1] = {in.data()};
  size_t sizes[1] = {size};
  int tags[1] = {3};
  ASSERT_EQ(net.irecv(recv_comm, 1, data, sizes, tags, &recv_mh, &recv_request), ncclSuccess);
  ASSERT_NE(recv_request, nullptr);
  void* send_request = nullptr;
  ASSERT_EQ(net.isend(send_comm, out.data(), size, 3, send_mh, &send_request), ncclSuccess);
  ASSERT_NE(send_request, nullptr);
  int done = 0;
  for (int i = 0; i < 20 && !done; ++i) ASSERT_EQ(net.test(send_request, &done, nullptr), ncclSuccess);
  ASSERT_EQ(done, 0) << "64 MiB cannot have left before the receiver reads";
  EXPECT_EQ(net.dereg(send_comm, send_mh), ncclSuccess);
  ASSERT_EQ(net.close_send(send_comm), ncclSuccess);  // the peer goes away mid-message

  Deadline deadline = Deadline::after_ms(10000);
  ncclResult_t result = ncclSuccess;
  done = 0;
  int received = -1;
  while (result == ncclSuccess && !done && !deadline.expired())
    result = net.test(recv_request, &done, &received);
  EXPECT_EQ(done, 0);
  EXPECT_EQ(result, ncclRemoteError) << "the receive must fail, not hang\n" << all_logged();
  EXPECT_TRUE(warned("test (receive) failed")) << all_logged();
  EXPECT_EQ(net.dereg(recv_comm, recv_mh), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
}

TEST_P(NcclPluginIoTest, SendLargerThanReceiveIsAnErrorOnTheReceiver) {
  NetV11 net{v11_, init_v11()};
  void *send_comm = nullptr, *recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  std::vector<char> out(1000, 'a'), in(100);
  void* data[1] = {in.data()};
  size_t sizes[1] = {in.size()};
  int tags[1] = {1};
  void *recv_request = nullptr, *send_request = nullptr;
  ASSERT_EQ(net.irecv(recv_comm, 1, data, sizes, tags, nullptr, &recv_request), ncclSuccess);
  ASSERT_EQ(net.isend(send_comm, out.data(), out.size(), 1, nullptr, &send_request), ncclSuccess);
  Deadline deadline = Deadline::after_ms(kWaitMs);
  ncclResult_t result = ncclSuccess;
  int done = 0;
  while (result == ncclSuccess && !done && !deadline.expired()) {
    int send_done = 0;
    if (send_request != nullptr && net.test(send_request, &send_done, nullptr) == ncclSuccess &&
        send_done)
      send_request = nullptr;
    result = net.test(recv_request, &done, nullptr);
  }
  EXPECT_EQ(result, ncclInvalidArgument) << all_logged();
  EXPECT_TRUE(warned("1000")) << "the message names the sizes\n" << all_logged();
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
}

// The data path over whichever transport CIUIC_NET_TRANSPORT names: TCP here, ibverbs on
// Soft-RoCE in the rdma-vm guest (tests/rdma-vm/checks/nccl_plugin.sh), so sizes an
// emulated link carries in seconds.
TEST_F(NcclPluginTest, GroupedTransfersOverTheConfiguredTransport) {
  NetV11 net{v11_, init_v11()};
  void *send_comm = nullptr, *recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  StreamStats stats;
  run_stream(net, send_comm, recv_comm, make_script(300, 8, 256 << 10, 11), &stats);
  EXPECT_GT(stats.bytes, 0u);
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
}

TEST_F(NcclPluginTest, RefusesGpuMemoryBadHandlesAndForeignPointers) {
  NetV11 net{v11_, init_v11()};
  void *send_comm = nullptr, *recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);
  ASSERT_FALSE(HasFatalFailure());
  std::vector<char> buf(4096);
  void* mh = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(v11_->regMr(send_comm, buf.data(), buf.size(), NCCL_PTR_CUDA, &mh), ncclInvalidUsage);
  EXPECT_EQ(mh, nullptr);
  EXPECT_TRUE(warned("host memory only")) << all_logged();
  // A send comm is not a listen comm, and a garbage handle does not connect.
  void* out = nullptr;
  EXPECT_EQ(net.accept(send_comm, &out), ncclInvalidArgument);
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  EXPECT_NE(net.connect(handle, &out), ncclSuccess);
  EXPECT_EQ(out, nullptr);
  int done = 0;
  EXPECT_EQ(v11_->test(buf.data(), &done, nullptr), ncclInvalidArgument);
  // iflush on host memory: nothing to wait for.
  void* request = reinterpret_cast<void*>(0x1);
  void* data[1] = {buf.data()};
  int sizes[1] = {100};
  EXPECT_EQ(v11_->iflush(recv_comm, 1, data, sizes, nullptr, &request), ncclSuccess);
  EXPECT_EQ(request, nullptr);
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
}

TEST_F(NcclPluginTest, ContextsAreCountedAndTheLastFinalizeClosesTheTransport) {
  void* first = init_v11(1);
  void* second = init_v11(2);
  ASSERT_EQ(v11_->finalize(first), ncclSuccess);
  NetV11 net{v11_, second};
  void *send_comm = nullptr, *recv_comm = nullptr;
  connect_pair(net, &send_comm, &recv_comm);  // still works on the second context
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
  ASSERT_EQ(v11_->finalize(second), ncclSuccess);
  char handle[NCCL_NET_HANDLE_MAXSIZE];
  void* listen_comm = nullptr;
  EXPECT_EQ(v11_->listen(second, 0, handle, &listen_comm), ncclInvalidArgument);
  EXPECT_EQ(listen_comm, nullptr);
}

TEST_P(NcclPluginIoTest, TwentyInitFinalizeCyclesLeakNoThreadOrDescriptor) {
  // Warm up once: lazily created process-wide things (logger state, dlopen's own files)
  // are not leaks.
  auto cycle = [&](int i) {
    NetV11 net{v11_, init_v11(100 + i)};
    void *send_comm = nullptr, *recv_comm = nullptr;
    connect_pair(net, &send_comm, &recv_comm);
    ASSERT_FALSE(HasFatalFailure());
    std::vector<char> out(1 << 20, static_cast<char>(i)), in(1 << 20);
    void* data[1] = {in.data()};
    size_t sizes[1] = {in.size()};
    int tags[1] = {i};
    void *recv_request = nullptr, *send_request = nullptr;
    ASSERT_EQ(net.irecv(recv_comm, 1, data, sizes, tags, nullptr, &recv_request), ncclSuccess);
    ASSERT_EQ(net.isend(send_comm, out.data(), out.size(), i, nullptr, &send_request), ncclSuccess);
    int send_done = 0, recv_done = 0;
    Deadline deadline = Deadline::after_ms(kWaitMs);
    while ((!send_done || !recv_done) && !deadline.expired()) {
      if (!send_done) {
        ASSERT_EQ(net.test(send_request, &send_done, nullptr), ncclSuccess);
      }
      if (!recv_done) {
        ASSERT_EQ(net.test(recv_request, &recv_done, nullptr), ncclSuccess);
      }
    }
    ASSERT_TRUE(send_done && recv_done);
    EXPECT_EQ(in, out);
    EXPECT_EQ(net.close_send(send_comm), ncclSuccess);
    EXPECT_EQ(net.close_recv(recv_comm), ncclSuccess);
    EXPECT_EQ(v11_->finalize(net.ctx), ncclSuccess);
    EXPECT_EQ(v11_->finalize(nullptr), ncclSuccess);
  };
  cycle(0);
  ASSERT_FALSE(HasFatalFailure());
  const int threads = count_entries("/proc/self/task");
  const int fds = count_entries("/proc/self/fd");
  for (int i = 1; i <= 20; ++i) {
    cycle(i);
    ASSERT_FALSE(HasFatalFailure()) << "cycle " << i;
    EXPECT_EQ(count_entries("/proc/self/task"), threads) << "cycle " << i;
    EXPECT_EQ(count_entries("/proc/self/fd"), fds) << "cycle " << i;
  }
}

}  // namespace
}  // namespace ciuic::nccl_plugin_test
