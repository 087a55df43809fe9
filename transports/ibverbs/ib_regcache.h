// Registration cache: one per protection domain, shared by every channel of a device.
//
// acquire() returns a registration enclosing [addr, addr+len): an existing one if any
// covers the range (its reference count goes up), else a new one of the range rounded out
// to pages. release() drops a reference. A registration nobody references any more is
// deregistered at once unless `keep_bytes` > 0, in which case the least recently used of
// those are kept up to that many bytes for reuse.
//
// Why not keep them by default: memory freed and mapped again at the same address under a
// kept registration cannot be detected portably (no hook on free/munmap that works for
// every allocator; ODP is not everywhere), and the stale registration would point at the
// old pages: data would silently go to the wrong memory. With keep_bytes == 0 a cached
// registration is only ever reused while a region handle (or an in-flight request) holds
// it, and while it does, the caller guarantees the memory stays mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>

#include "base/status.h"

namespace ciuic::transport::ib {

class RegistrationCache {
 public:
  struct Entry {
    uintptr_t start = 0;
    size_t length = 0;
    int kind = 0;         // PointerKind: host and CUDA registrations never stand in for each other
    void* handle = nullptr;  // the backend's registration (an ibv_mr*)
    uint32_t lkey = 0;
    uint32_t rkey = 0;
    int refs = 0;
    std::list<Entry*>::iterator lru;  // valid while refs == 0
  };
  struct Backend {
    std::function<Status(uintptr_t start, size_t length, int kind, Entry* out)> reg;
    std::function<void(Entry* entry)> dereg;
  };

  RegistrationCache(Backend backend, size_t keep_bytes, size_t page_bytes = 4096)
      : backend_(std::move(backend)), keep_bytes_(keep_bytes), page_(page_bytes) {}
  ~RegistrationCache();
  RegistrationCache(const RegistrationCache&) = delete;
  RegistrationCache& operator=(const RegistrationCache&) = delete;

  Status acquire(const void* addr, size_t length, int kind, Entry** out);
  void release(Entry* entry);

  // For tests and logs.
  size_t entry_count() const;
  size_t idle_bytes() const;
  uint64_t registrations_made() const;

 private:
  void evict_locked(size_t budget);

  Backend backend_;
  size_t keep_bytes_;
  size_t page_;
  mutable std::mutex mutex_;
  std::multimap<uintptr_t, Entry*> by_start_;
  std::list<Entry*> idle_;  // refs == 0, most recently released first
  size_t idle_bytes_ = 0;
  uint64_t made_ = 0;
};

}  // namespace ciuic::transport::ib
