#include "coll/schedule_cache.h"

#include <algorithm>
#include <functional>

#include "base/config.h"

namespace ciuic::coll {
namespace {

size_t mix(size_t h, uint64_t v) {
  // boost-style combine over 64 bits: cheap, and good enough for a few hundred keys.
  return h ^ (std::hash<uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
}

}  // namespace

ScheduleCache::ScheduleCache(size_t capacity)
    : capacity_(std::max<size_t>(capacity, 1)), generation_(config::configuration_generation()) {}

ScheduleCache::Key ScheduleCache::key_of(const CollectiveArgs& a) {
  return Key{a.collective, a.rank,      a.nranks,       a.root,
             a.peer,       a.count,     a.datatype,     a.op,
             a.in_place,   a.in_place_mpi, a.chunk_bytes, a.scratch_slots,
             a.torus_dims};
}

size_t ScheduleCache::KeyHash::operator()(const Key& k) const {
  size_t h = std::hash<uint64_t>{}(k.count);
  h = mix(h, static_cast<uint64_t>(k.collective) | static_cast<uint64_t>(k.datatype) << 8 |
                 static_cast<uint64_t>(k.op) << 16 | static_cast<uint64_t>(k.in_place) << 24 |
                 static_cast<uint64_t>(k.in_place_mpi) << 25);
  h = mix(h, static_cast<uint32_t>(k.root) | static_cast<uint64_t>(static_cast<uint32_t>(k.peer)) << 32);
  h = mix(h, static_cast<uint32_t>(k.rank) | static_cast<uint64_t>(static_cast<uint32_t>(k.nranks)) << 32);
  h = mix(h, k.chunk_bytes);
  h = mix(h, static_cast<uint64_t>(k.scratch_slots));
  for (int d : k.torus_dims) h = mix(h, static_cast<uint64_t>(d));
  return h;
}

void ScheduleCache::forget_if_reconfigured() {
  const uint64_t now = config::configuration_generation();
  if (now == generation_) return;
  generation_ = now;
  index_.clear();
  entries_.clear();
}

bool ScheduleCache::same(const Key& k, const CollectiveArgs& a) {
  return k.count == a.count && k.collective == a.collective && k.datatype == a.datatype &&
         k.op == a.op && k.root == a.root && k.peer == a.peer && k.rank == a.rank &&
         k.nranks == a.nranks && k.in_place == a.in_place && k.in_place_mpi == a.in_place_mpi &&
         k.chunk_bytes == a.chunk_bytes && k.scratch_slots == a.scratch_slots &&
         k.torus_dims == a.torus_dims;
}

std::shared_ptr<const Schedule> ScheduleCache::find(const CollectiveArgs& args) {
  forget_if_reconfigured();
  // A loop repeats one call: the most recent entry answers it without hashing.
  if (!entries_.empty() && same(entries_.front().key, args)) return entries_.front().schedule;
  auto it = index_.find(key_of(args));
  if (it == index_.end()) return nullptr;
  entries_.splice(entries_.begin(), entries_, it->second);  // now the most recent
  return it->second->schedule;
}

void ScheduleCache::insert(const CollectiveArgs& args, std::shared_ptr<const Schedule> schedule) {
  Key key = key_of(args);
  auto it = index_.find(key);
  if (it != index_.end()) {
    it->second->schedule = std::move(schedule);
    entries_.splice(entries_.begin(), entries_, it->second);
    return;
  }
  if (entries_.size() >= capacity_) {
    index_.erase(entries_.back().key);
    entries_.pop_back();
  }
  entries_.push_front(Entry{key, std::move(schedule)});
  index_.emplace(std::move(key), entries_.begin());
}

}  // namespace ciuic::coll
