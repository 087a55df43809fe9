// The schedules a communicator has built, by everything a builder reads of a call, so that
// running a shape again is one lookup instead of a build (and the tuner's decision behind
// it). One cache per communicator: what is the same for all of its calls (rank, size, node
// layout, transports) is not part of the key.
//
// Bounded: past `capacity` entries the least recently used one goes. A change of the
// configuration (config::set_override, reload_environment: CIUIC_ALGO, CIUIC_TUNER_FILE,
// CIUIC_TOPOLOGY ... may choose another algorithm now) empties it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "coll/schedule.h"

namespace ciuic::coll {

class ScheduleCache {
 public:
  static constexpr size_t kDefaultCapacity = 256;
  explicit ScheduleCache(size_t capacity = kDefaultCapacity);

  // The schedule built earlier for a call like `args`, or null.
  std::shared_ptr<const Schedule> find(const CollectiveArgs& args);
  // Keeps `schedule` for calls like `args`, under the configuration that was in force when
  // the caller looked it up (a build that raced a change is dropped at the next find).
  void insert(const CollectiveArgs& args, std::shared_ptr<const Schedule> schedule);

  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  struct Key {
    Collective collective;
    int rank, nranks, root, peer;
    size_t count;
    ciuic_datatype_t datatype;
    ciuic_op_t op;
    bool in_place, in_place_mpi;
    size_t chunk_bytes;
    int scratch_slots;
    std::vector<int> torus_dims;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    Key key;
    std::shared_ptr<const Schedule> schedule;
  };
  static Key key_of(const CollectiveArgs& args);
  static bool same(const Key& key, const CollectiveArgs& args);
  void forget_if_reconfigured();

  size_t capacity_;
  uint64_t generation_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_;
};

}  // namespace ciuic::coll
