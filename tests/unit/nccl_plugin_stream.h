// The NCCL plugin's data-path scenario: a scripted stream of grouped, tagged messages of
// random sizes, pushed with as many requests in flight as the plugin accepts, every byte
// and every reported size checked. Runs against any table wrapped by NetV11 / NetV8.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <random>

#include "unit/nccl_plugin_test_helpers.h"

namespace ciuic::nccl_plugin_test {

struct ScriptedMessage {
  int id;
  int tag;
  size_t size;
  size_t capacity;  // receive buffer, >= size
};

struct ScriptedGroup {
  std::vector<ScriptedMessage> messages;  // receive order (buffer index)
  std::vector<int> send_order;            // indices into messages
};

struct StreamStats {
  int max_sends_in_flight = 0;
  int max_recvs_in_flight = 0;
  int send_retries = 0;  // isend answered "not now" (NULL request)
  int registrations_during_transfer = 0;
  size_t bytes = 0;
};

inline uint64_t pattern_word(int id, size_t index) {
  uint64_t x = (static_cast<uint64_t>(id) + 1) * 0x9e3779b97f4a7c15ull ^ (index * 0xbf58476d1ce4e5b9ull);
  x ^= x >> 31;
  return x * 0x94d049bb133111ebull;
}

inline void fill_pattern(std::vector<char>* buf, int id, size_t size) {
  for (size_t i = 0; i < size; i += 8) {
    uint64_t w = pattern_word(id, i / 8);
    std::memcpy(buf->data() + i, &w, std::min<size_t>(8, size - i));
  }
}

// Offset of the first wrong byte, or -1.
inline long long first_mismatch(const std::vector<char>& buf, int id, size_t size) {
  for (size_t i = 0; i < size; i += 8) {
    uint64_t w = pattern_word(id, i / 8);
    if (std::memcmp(buf.data() + i, &w, std::min<size_t>(8, size - i)) != 0)
      return static_cast<long long>(i);
  }
  return -1;
}

// Mostly small messages, some medium, a few up to max_size; empty ones too.
inline std::vector<ScriptedGroup> make_script(int messages, int max_recvs, size_t max_size,
                                              uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  std::vector<ScriptedGroup> groups;
  int id = 0;
  while (id < messages) {
    ScriptedGroup g;
    int n = pick(0, 9) < 4 ? 1 : static_cast<int>(pick(1, max_recvs));
    n = std::min(n, messages - id);
    std::vector<int> tags(max_recvs);
    for (int i = 0; i < max_recvs; ++i) tags[i] = 100 + i * 7;
    std::shuffle(tags.begin(), tags.end(), rng);
    for (int i = 0; i < n; ++i) {
      uint64_t kind = pick(0, 99);
      size_t size = kind < 5    ? 0
                    : kind < 55 ? pick(1, 4096)
                    : kind < 92 ? pick(4097, 256 * 1024)
                                : pick(256 * 1024, max_size);
      size_t capacity = size + (pick(0, 2) == 0 ? 0 : pick(1, 100));
      g.messages.push_back({id++, tags[i], size, capacity});
      g.send_order.push_back(i);
    }
    std::shuffle(g.send_order.begin(), g.send_order.end(), rng);
    groups.push_back(std::move(g));
  }
  return groups;
}

template <typename Net>
void run_stream(Net& net, void* send_comm, void* recv_comm, const std::vector<ScriptedGroup>& script,
                StreamStats* stats) {
  constexpr int kWindow = NCCL_NET_MAX_REQUESTS;
  Deadline deadline = Deadline::after_ms(180000);
  std::atomic<bool> transfer_done{false};
  std::atomic<bool> failed{false};

  // Registration on the send comm from another thread while data moves, as NCCL's
  // service thread does.
  std::thread registrar([&] {
    std::vector<char> scratch(1 << 16);
    while (!transfer_done.load()) {
      void* mh = nullptr;
      if (net.reg(send_comm, scratch.data(), scratch.size(), &mh) != ncclSuccess || mh == nullptr ||
          net.dereg(send_comm, mh) != ncclSuccess) {
        ADD_FAILURE() << "regMr/deregMr failed during the transfer";
        failed = true;
        return;
      }
      ++stats->registrations_during_transfer;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });

  std::thread sender([&] {
    struct InFlight {
      void* request;
      void* mh;
      std::vector<char> buf;
      size_t size;
    };
    std::vector<const ScriptedMessage*> order;
    for (const ScriptedGroup& g : script)
      for (int i : g.send_order) order.push_back(&g.messages[i]);
    std::deque<InFlight> flight;
    size_t next = 0;
    while ((next < order.size() || !flight.empty()) && !failed) {
      if (deadline.expired()) {
        ADD_FAILURE() << "sender: deadline passed with " << order.size() - next << " unsent";
        failed = true;
        return;
      }
      while (next < order.size() && static_cast<int>(flight.size()) < kWindow) {
        const ScriptedMessage& m = *order[next];
        InFlight f{nullptr, nullptr, std::vector<char>(std::max<size_t>(m.size, 1)), m.size};
        fill_pattern(&f.buf, m.id, m.size);
        if (net.reg(send_comm, f.buf.data(), f.buf.size(), &f.mh) != ncclSuccess) {
          ADD_FAILURE() << "regMr on the send comm failed\n" << all_logged();
          failed = true;
          return;
        }
        ncclResult_t r = net.isend(send_comm, f.buf.data(), m.size, m.tag, f.mh, &f.request);
        if (r != ncclSuccess) {
          ADD_FAILURE() << "isend " << m.id << " -> " << r << "\n" << all_logged();
          failed = true;
          return;
        }
        if (f.request == nullptr) {  // not now: NCCL keeps the buffer and retries later
          EXPECT_EQ(net.dereg(send_comm, f.mh), ncclSuccess);
          ++stats->send_retries;
          break;
        }
        flight.push_back(std::move(f));
        ++next;
        stats->max_sends_in_flight = std::max(stats->max_sends_in_flight, static_cast<int>(flight.size()));
      }
      for (auto it = flight.begin(); it != flight.end();) {
        int done = 0;
        int size = -1;
        ncclResult_t r = net.test(it->request, &done, &size);
        if (r != ncclSuccess) {
          ADD_FAILURE() << "send test -> " << r << "\n" << all_logged();
          failed = true;
          return;
        }
        if (!done) {
          ++it;
          continue;
        }
        EXPECT_EQ(static_cast<size_t>(size), it->size) << "a send's test() reports its size";
        EXPECT_EQ(net.dereg(send_comm, it->mh), ncclSuccess);
        it = flight.erase(it);
      }
    }
  });

  // Receiver: this thread.
  struct Posted {
    const ScriptedGroup* group;
    void* request;
    std::vector<std::vector<char>> bufs;
    std::vector<void*> mhs;
  };
  std::deque<Posted> posted;
  size_t next_group = 0;
  while ((next_group < script.size() || !posted.empty()) && !failed) {
    if (deadline.expired()) {
      ADD_FAILURE() << "receiver: deadline passed with " << script.size() - next_group
                    << " groups not posted";
      failed = true;
      break;
    }
    while (next_group < script.size() && static_cast<int>(posted.size()) < kWindow) {
      const ScriptedGroup& g = script[next_group];
      int n = static_cast<int>(g.messages.size());
      Posted p{&g, nullptr, {}, std::vector<void*>(n)};
      std::vector<void*> data(n);
      std::vector<size_t> sizes(n);
      std::vector<int> tags(n);
      for (int i = 0; i < n; ++i) {
        p.bufs.emplace_back(std::max<size_t>(g.messages[i].capacity, 1), '\0');
        data[i] = p.bufs[i].data();
        sizes[i] = g.messages[i].capacity;
        tags[i] = g.messages[i].tag;
        if (net.reg(recv_comm, data[i], p.bufs[i].size(), &p.mhs[i]) != ncclSuccess) {
          ADD_FAILURE() << "regMr on the recv comm failed\n" << all_logged();
          failed = true;
        }
      }
      if (failed) break;
      // NCCL pre-stores this hint for single receives; the plugin must overwrite it.
      p.request = n == 1 ? reinterpret_cast<void*>(NCCL_NET_OPTIONAL_RECV_COMPLETION) : nullptr;
      ncclResult_t r = net.irecv(recv_comm, n, data.data(), sizes.data(), tags.data(), p.mhs.data(),
                                 &p.request);
      if (r != ncclSuccess) {
        ADD_FAILURE() << "irecv -> " << r << "\n" << all_logged();
        failed = true;
        break;
      }
      if (p.request == reinterpret_cast<void*>(NCCL_NET_OPTIONAL_RECV_COMPLETION)) {
        ADD_FAILURE() << "irecv left NCCL's optional-completion hint in *request";
        failed = true;
        break;
      }
      if (p.request == nullptr) {
        for (void* mh : p.mhs) EXPECT_EQ(net.dereg(recv_comm, mh), ncclSuccess);
        break;
      }
      posted.push_back(std::move(p));
      ++next_group;
      stats->max_recvs_in_flight = std::max(stats->max_recvs_in_flight, static_cast<int>(posted.size()));
    }
    for (auto it = posted.begin(); it != posted.end() && !failed;) {
      int done = 0;
      int sizes[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
      ncclResult_t r = net.test(it->request, &done, sizes);
      if (r != ncclSuccess) {
        ADD_FAILURE() << "recv test -> " << r << "\n" << all_logged();
        failed = true;
        break;
      }
      if (!done) {
        ++it;
        continue;
      }
      const ScriptedGroup& g = *it->group;
      for (size_t i = 0; i < g.messages.size(); ++i) {
        const ScriptedMessage& m = g.messages[i];
        EXPECT_EQ(static_cast<size_t>(sizes[i]), m.size) << "message " << m.id << " tag " << m.tag;
        long long bad = first_mismatch(it->bufs[i], m.id, m.size);
        EXPECT_EQ(bad, -1) << "message " << m.id << " (" << m.size << " B) wrong at byte " << bad;
        if (bad != -1) failed = true;
        stats->bytes += m.size;
        EXPECT_EQ(net.dereg(recv_comm, it->mhs[i]), ncclSuccess);
      }
      it = posted.erase(it);
    }
  }
  sender.join();
  transfer_done = true;
  registrar.join();
}

}  // namespace ciuic::nccl_plugin_test
