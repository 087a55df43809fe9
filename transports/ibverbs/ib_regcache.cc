#include "transports/ibverbs/ib_regcache.h"

namespace ciuic::transport::ib {

RegistrationCache::~RegistrationCache() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Regions outliving the cache would be a bug of the owner; registrations still go.
  for (auto& [start, entry] : by_start_) {
    backend_.dereg(entry);
    delete entry;
  }
}

Status RegistrationCache::acquire(const void* addr, size_t length, int kind, Entry** out) {
  *out = nullptr;
  uintptr_t begin = reinterpret_cast<uintptr_t>(addr);
  if (length == 0) length = 1;
  if (begin + length < begin) return invalid_argument("registration range wraps around");
  uintptr_t end = begin + length;
  std::lock_guard<std::mutex> lock(mutex_);
  // The enclosing registration, if any, starts at or before begin.
  for (auto it = by_start_.upper_bound(begin); it != by_start_.begin();) {
    --it;
    Entry* e = it->second;
    if (e->kind == kind && e->start + e->length >= end) {
      if (e->refs++ == 0) {
        idle_.erase(e->lru);
        idle_bytes_ -= e->length;
      }
      *out = e;
      return Status::Ok();
    }
  }
  uintptr_t page_begin = begin - begin % page_;
  uintptr_t page_end = end + (end % page_ ? page_ - end % page_ : 0);
  auto* e = new Entry();
  e->start = page_begin;
  e->length = page_end - page_begin;
  e->kind = kind;
  Status s = backend_.reg(e->start, e->length, kind, e);
  if (!s.ok()) {
    delete e;
    // Kept registrations may be what exhausts the pinned-memory limit: drop them and retry.
    if (idle_.empty()) return s;
    evict_locked(0);
    e = new Entry();
    e->start = page_begin;
    e->length = page_end - page_begin;
    e->kind = kind;
    s = backend_.reg(e->start, e->length, kind, e);
    if (!s.ok()) {
      delete e;
      return s;
    }
  }
  ++made_;
  e->refs = 1;
  by_start_.emplace(e->start, e);
  *out = e;
  return Status::Ok();
}

void RegistrationCache::release(Entry* entry) {
  if (entry == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (--entry->refs > 0) return;
  idle_.push_front(entry);
  entry->lru = idle_.begin();
  idle_bytes_ += entry->length;
  evict_locked(keep_bytes_);
}

void RegistrationCache::evict_locked(size_t budget) {
  while (idle_bytes_ > budget && !idle_.empty()) {
    Entry* victim = idle_.back();
    idle_.pop_back();
    idle_bytes_ -= victim->length;
    auto range = by_start_.equal_range(victim->start);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == victim) {
        by_start_.erase(it);
        break;
      }
    }
    backend_.dereg(victim);
    delete victim;
  }
}

size_t RegistrationCache::entry_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return by_start_.size();
}

size_t RegistrationCache::idle_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_bytes_;
}

uint64_t RegistrationCache::registrations_made() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return made_;
}

}  // namespace ciuic::transport::ib
