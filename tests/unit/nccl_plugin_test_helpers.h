// Helpers for the NCCL plugin tests: load libnccl-net-ciuic.so as NCCL does (dlopen +
// dlsym of ncclNetPlugin_vN), capture what it logs through NCCL's logger, and drive the
// v11 and v8 tables through one interface so the same scenarios run against both.
#pragma once

#include <dirent.h>
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "plugins/nccl/nccl_net_abi.h"

#ifndef CIUIC_NCCL_PLUGIN_PATH
#error "CIUIC_NCCL_PLUGIN_PATH must name the built libnccl-net-ciuic.so"
#endif

namespace ciuic::nccl_plugin_test {

constexpr int64_t kWaitMs = 20000;

// ---- NCCL's logger, recorded ----
struct LogLine {
  int level;
  unsigned long flags;
  std::string text;
};

// Never destroyed: the plugin stays loaded (-z nodelete) and may still log while the
// process exits, after function-local statics of this binary are gone.
inline std::mutex& log_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
inline std::vector<LogLine>& log_lines() {
  static auto* lines = new std::vector<LogLine>;
  return *lines;
}

inline void capture_logger(ncclDebugLogLevel level, unsigned long flags, const char*, int,
                           const char* fmt, ...) {
  char text[4096];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  std::lock_guard<std::mutex> lock(log_mutex());
  log_lines().push_back({static_cast<int>(level), flags, text});
}

// True if a WARN line containing `needle` was logged.
inline bool warned(const std::string& needle) {
  std::lock_guard<std::mutex> lock(log_mutex());
  for (const LogLine& l : log_lines())
    if (l.level == NCCL_LOG_WARN && l.text.find(needle) != std::string::npos) return true;
  return false;
}

inline std::string all_logged() {
  std::lock_guard<std::mutex> lock(log_mutex());
  std::string out;
  for (const LogLine& l : log_lines()) out += std::to_string(l.level) + " " + l.text + "\n";
  return out;
}

// ---- the library ----
class PluginLibrary {
 public:
  PluginLibrary() : handle_(dlopen(CIUIC_NCCL_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL)) {}
  ~PluginLibrary() {
    if (handle_ != nullptr) dlclose(handle_);
  }
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  void* handle() const { return handle_; }
  template <typename T>
  const T* table(const char* name) const {
    return handle_ == nullptr ? nullptr : static_cast<const T*>(dlsym(handle_, name));
  }

 private:
  void* handle_;
};

// Entries in a /proc/self directory ("task" = threads, "fd" = descriptors).
inline int count_entries(const char* dir) {
  DIR* d = opendir(dir);
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - (std::string(dir) == "/proc/self/fd" ? 1 : 0);  // opendir's own descriptor
}

// ---- one interface over the v11 and v8 tables ----
struct NetV11 {
  const ncclNet_v11_t* net = nullptr;
  void* ctx = nullptr;

  ncclResult_t listen(void* handle, void** lc) { return net->listen(ctx, 0, handle, lc); }
  ncclResult_t connect(void* handle, void** sc) {
    ncclNetDeviceHandle_v11_t* dev = nullptr;
    return net->connect(ctx, 0, handle, sc, &dev);
  }
  ncclResult_t accept(void* lc, void** rc) {
    ncclNetDeviceHandle_v11_t* dev = nullptr;
    return net->accept(lc, rc, &dev);
  }
  ncclResult_t reg(void* comm, void* data, size_t size, void** mh) {
    return net->regMr(comm, data, size, NCCL_PTR_HOST, mh);
  }
  ncclResult_t dereg(void* comm, void* mh) { return net->deregMr(comm, mh); }
  ncclResult_t isend(void* sc, void* data, size_t size, int tag, void* mh, void** req) {
    return net->isend(sc, data, size, tag, mh, nullptr, req);
  }
  ncclResult_t irecv(void* rc, int n, void** data, const size_t* sizes, int* tags, void** mhs,
                     void** req) {
    size_t copy[8];
    for (int i = 0; i < n && i < 8; ++i) copy[i] = sizes[i];
    void* phandles[8] = {};
    return net->irecv(rc, n, data, copy, tags, mhs, phandles, req);
  }
  ncclResult_t test(void* req, int* done, int* sizes) { return net->test(req, done, sizes); }
  ncclResult_t close_send(void* c) { return net->closeSend(c); }
  ncclResult_t close_recv(void* c) { return net->closeRecv(c); }
  ncclResult_t close_listen(void* c) { return net->closeListen(c); }
};

struct NetV8 {
  const ncclNet_v8_t* net = nullptr;

  ncclResult_t listen(void* handle, void** lc) { return net->listen(0, handle, lc); }
  ncclResult_t connect(void* handle, void** sc) {
    ncclNetDeviceHandle_v8_t* dev = nullptr;
    return net->connect(0, handle, sc, &dev);
  }
  ncclResult_t accept(void* lc, void** rc) {
    ncclNetDeviceHandle_v8_t* dev = nullptr;
    return net->accept(lc, rc, &dev);
  }
  ncclResult_t reg(void* comm, void* data, size_t size, void** mh) {
    return net->regMr(comm, data, size, NCCL_PTR_HOST, mh);
  }
  ncclResult_t dereg(void* comm, void* mh) { return net->deregMr(comm, mh); }
  ncclResult_t isend(void* sc, void* data, size_t size, int tag, void* mh, void** req) {
    return net->isend(sc, data, static_cast<int>(size), tag, mh, req);
  }
  ncclResult_t irecv(void* rc, int n, void** data, const size_t* sizes, int* tags, void** mhs,
                     void** req) {
    int narrow[8];
    for (int i = 0; i < n && i < 8; ++i) narrow[i] = static_cast<int>(sizes[i]);
    return net->irecv(rc, n, data, narrow, tags, mhs, req);
  }
  ncclResult_t test(void* req, int* done, int* sizes) { return net->test(req, done, sizes); }
  ncclResult_t close_send(void* c) { return net->closeSend(c); }
  ncclResult_t close_recv(void* c) { return net->closeRecv(c); }
  ncclResult_t close_listen(void* c) { return net->closeListen(c); }
};

// listen -> handle -> connect (this thread) and accept (another thread), both polled to
// completion as NCCL's proxy threads do, the connect always with the same handle buffer.
template <typename Net>
void connect_pair(Net& net, void** send_comm, void** recv_comm) {
  *send_comm = nullptr;
  *recv_comm = nullptr;
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  void* listen_comm = nullptr;
  ASSERT_EQ(net.listen(handle, &listen_comm), ncclSuccess);
  ASSERT_NE(listen_comm, nullptr);
  ncclResult_t accept_result = ncclSuccess;
  std::thread acceptor([&] {
    Deadline deadline = Deadline::after_ms(kWaitMs);
    while (*recv_comm == nullptr && accept_result == ncclSuccess && !deadline.expired()) {
      accept_result = net.accept(listen_comm, recv_comm);
      if (*recv_comm == nullptr) std::this_thread::yield();
    }
  });
  ncclResult_t connect_result = ncclSuccess;
  int polls = 0;
  Deadline deadline = Deadline::after_ms(kWaitMs);
  while (*send_comm == nullptr && connect_result == ncclSuccess && !deadline.expired()) {
    connect_result = net.connect(handle, send_comm);
    ++polls;
    if (*send_comm == nullptr) std::this_thread::yield();
  }
  acceptor.join();
  EXPECT_EQ(net.close_listen(listen_comm), ncclSuccess);  // NCCL closes it once accepted
  ASSERT_EQ(connect_result, ncclSuccess) << all_logged();
  ASSERT_EQ(accept_result, ncclSuccess) << all_logged();
  ASSERT_NE(*send_comm, nullptr) << "connect did not finish within " << kWaitMs << " ms";
  ASSERT_NE(*recv_comm, nullptr) << "accept did not finish within " << kWaitMs << " ms";
  EXPECT_GE(polls, 1);
}

}  // namespace ciuic::nccl_plugin_test
