// Helpers shared by the transport tests (tcp, shm, ibverbs, the conformance suite):
// connecting a pair of channels from two threads, posting with retry, waiting on requests
// in poll(), data patterns that expose misplaced bytes, a checked stream of messages, and
// the capture of WARN lines.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "support/scoped_config.h"
#include "transports/transport.h"

namespace ciuic::transport::transport_test {

constexpr int64_t kWaitMs = 20000;

inline void sleep_on(const std::vector<pollfd>& collected, int poll_ms = 50) {
  std::vector<pollfd> fds = collected;
  if (fds.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return;
  }
  ::poll(fds.data(), fds.size(), poll_ms);
}

// Calls step(&done) until it reports done, sleeping in poll() in between on the descriptors
// of `waiter` (a channel, listener or connector) for at most poll_ms, and for at most ms in
// all; `what` names the wait in its timeout.
template <typename Waiter, typename Step>
Status drive(const Waiter* waiter, Step step, const char* what, int64_t ms = kWaitMs,
             int poll_ms = 50) {
  Deadline deadline = Deadline::after_ms(ms);
  for (;;) {
    bool done = false;
    CIUIC_RETURN_IF_ERROR(step(&done));
    if (done) return Status::Ok();
    if (deadline.expired()) return timeout_error(std::string(what) + " not done in time");
    std::vector<pollfd> fds;
    waiter->collect_poll_fds(&fds);
    sleep_on(fds, poll_ms);
  }
}

// Accepts one channel on this thread.
inline Status accept_one(Listener* listener, std::unique_ptr<RecvChannel>* out,
                         int64_t ms = kWaitMs) {
  return drive(
      listener,
      [&](bool* done) {
        CIUIC_RETURN_IF_ERROR(listener->accept(out));
        *done = *out != nullptr;
        return Status::Ok();
      },
      "accept", ms);
}

// Connects from this thread to `handle`.
inline Status connect_to(Transport* t, const ConnectHandle& handle,
                         std::unique_ptr<SendChannel>* out, int64_t ms = kWaitMs) {
  std::unique_ptr<Connector> connector;
  CIUIC_RETURN_IF_ERROR(t->connect(0, handle, &connector));
  return drive(
      connector.get(),
      [&](bool* done) {
        CIUIC_RETURN_IF_ERROR(connector->progress(out));
        *done = *out != nullptr;
        return Status::Ok();
      },
      "connect", ms);
}

struct ChannelPair {
  std::unique_ptr<SendChannel> send;
  std::unique_ptr<RecvChannel> recv;
};

// Accepts on one thread while this one connects, as two ranks would.
inline Status connect_pair(Transport* t, ChannelPair* out, Listener* listener = nullptr) {
  std::unique_ptr<Listener> own;
  if (listener == nullptr) {
    CIUIC_RETURN_IF_ERROR(t->listen(0, &own));
    listener = own.get();
  }
  Status accepted;
  std::thread acceptor([&] { accepted = accept_one(listener, &out->recv); });
  Status connected = connect_to(t, listener->handle(), &out->send);
  acceptor.join();  // on a connect failure it gives up at its own deadline
  return connected.ok() ? accepted : connected;
}

template <typename ChannelT, typename SizeT>
Status wait_done(ChannelT* channel, Request* request, SizeT* sizes, int64_t ms = kWaitMs,
                 int poll_ms = 50) {
  return drive(
      channel, [&](bool* done) { return channel->test(request, done, sizes); }, "request", ms,
      poll_ms);
}

// Posts until the channel takes the request: a null request means "not now" (too many in
// flight, or, on ibverbs, a send whose receive is not announced yet).
template <typename Post, typename Channel>
Status post_retry(Channel* channel, Post post, Request** request, int64_t ms = kWaitMs) {
  return drive(
      channel,
      [&](bool* done) {
        CIUIC_RETURN_IF_ERROR(post(request));
        *done = *request != nullptr;
        return Status::Ok();
      },
      "post", ms);
}

inline Status isend_retry(SendChannel* send, const void* data, size_t size, int tag,
                          Request** request, MemoryRegion* region = nullptr) {
  return post_retry(
      send, [&](Request** r) { return send->isend(data, size, tag, region, r); }, request);
}

// A receive of one buffer.
inline Status irecv_retry(RecvChannel* recv, void* data, size_t capacity, int tag,
                          Request** request, MemoryRegion* region = nullptr) {
  return post_retry(
      recv, [&](Request** r) { return recv->irecv(1, &data, &capacity, &tag, &region, r); },
      request);
}

// A grouped receive of n buffers (no registrations).
inline Status irecv_group_retry(RecvChannel* recv, int n, void* const* data, const size_t* sizes,
                                const int* tags, Request** request) {
  MemoryRegion* const regions[kMaxGroupedRecvs] = {};
  return post_retry(
      recv, [&](Request** r) { return recv->irecv(n, data, sizes, tags, regions, r); }, request);
}

// Tests both requests from this thread until both are done, sleeping in poll() on both
// channels' descriptors when neither moved. A null request counts as done.
inline Status wait_both(SendChannel* send, Request* sr, RecvChannel* recv, Request* rr,
                        size_t* received, int64_t ms = kWaitMs) {
  Deadline deadline = Deadline::after_ms(ms);
  bool send_done = sr == nullptr, recv_done = rr == nullptr;
  while (!send_done || !recv_done) {
    if (!send_done) CIUIC_RETURN_IF_ERROR(send->test(sr, &send_done, nullptr));
    if (!recv_done) CIUIC_RETURN_IF_ERROR(recv->test(rr, &recv_done, received));
    if (send_done && recv_done) break;
    if (deadline.expired()) return timeout_error("requests not done in time");
    std::vector<pollfd> fds;
    if (!send_done) send->collect_poll_fds(&fds);
    if (!recv_done) recv->collect_poll_fds(&fds);
    ::poll(fds.data(), fds.size(), 20);
  }
  return Status::Ok();
}

// Bytes that depend on (message, offset), so a misplaced or shifted piece is caught.
inline uint8_t pattern(uint64_t message, uint64_t offset) {
  uint64_t x = (message + 1) * 0x9E3779B97F4A7C15ULL ^ (offset >> 3) * 0xBF58476D1CE4E5B9ULL;
  return static_cast<uint8_t>((x >> 29) ^ (x >> 47) ^ offset);
}
inline void fill(uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) p[i] = pattern(message, i);
}
// The first wrong offset, or -1.
inline int64_t first_mismatch(const uint8_t* p, size_t size, uint64_t message) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != pattern(message, i)) return static_cast<int64_t>(i);
  }
  return -1;
}

// Captures WARN lines while it lives.
class WarningCapture {
 public:
  WarningCapture() {
    std::lock_guard<std::mutex> lock(mutex());
    lines().clear();
    log::set_sink(&capture);
  }
  ~WarningCapture() { log::set_sink(nullptr); }
  WarningCapture(const WarningCapture&) = delete;
  WarningCapture& operator=(const WarningCapture&) = delete;

  bool saw(const std::string& text) const {
    std::lock_guard<std::mutex> lock(mutex());
    for (const auto& line : lines()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  // The lines that contain every one of `texts`.
  size_t count(const std::vector<std::string>& texts) const {
    std::lock_guard<std::mutex> lock(mutex());
    return static_cast<size_t>(std::count_if(lines().begin(), lines().end(), [&](const auto& line) {
      return std::all_of(texts.begin(), texts.end(), [&](const std::string& text) {
        return line.find(text) != std::string::npos;
      });
    }));
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::string>& lines() {
    static std::vector<std::string> v;
    return v;
  }
  static void capture(log::Level level, uint32_t, const char*, int, const char* message) {
    std::lock_guard<std::mutex> lock(mutex());
    if (level == log::Level::kWarn) lines().emplace_back(message);
  }
};

struct StreamMessage {
  size_t size;
  size_t capacity;  // the receive buffer: sometimes larger than the message
  int tag;
  bool sender_registers;  // the receiver registers when the sender does not
};

// Messages of log-uniform sizes in 0..max, every 150th up to `large`; the first is empty and
// the second the largest.
inline std::vector<StreamMessage> random_stream(int count, size_t max, size_t large,
                                                uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<StreamMessage> out(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    StreamMessage& m = out[static_cast<size_t>(i)];
    if (i % 150 == 7) {
      m.size = rng() % (large + 1);
    } else {
      double e =
          std::uniform_real_distribution<double>(0, std::log2(static_cast<double>(max) + 1))(rng);
      m.size = std::min(max, static_cast<size_t>(std::exp2(e)) - 1);
    }
    m.capacity = m.size + (rng() % 3 == 0 ? rng() % 5000 : 0);
    m.tag = i % 5;
    m.sender_registers = rng() % 2 == 0;
  }
  if (count > 1) {
    out[0].size = 0;
    out[1].size = std::max(max, large);
    out[0].capacity = std::max(out[0].capacity, out[0].size);
    out[1].capacity = std::max(out[1].capacity, out[1].size);
  }
  return out;
}

// Streams the messages over `pair` from one thread to another with up to `depth` in
// flight on each side, registered and unregistered buffers on either side, and checks
// every byte and size, and that nothing lands past a message. A transport whose sends do
// not wait for their receives must take each send at once.
inline void stream_over(ChannelPair& pair, bool sends_wait_for_receives,
                        const std::vector<StreamMessage>& messages, int depth) {
  const int count = static_cast<int>(messages.size());
  Status send_status;
  std::thread sender([&] {
    std::vector<std::vector<uint8_t>> buffers(static_cast<size_t>(depth));
    std::vector<std::unique_ptr<MemoryRegion>> regions(static_cast<size_t>(depth));
    std::vector<Request*> inflight(static_cast<size_t>(depth), nullptr);
    for (int i = 0; i < count && send_status.ok(); ++i) {
      const size_t slot = static_cast<size_t>(i % depth);
      if (inflight[slot] != nullptr) {
        send_status = wait_done(pair.send.get(), inflight[slot], static_cast<size_t*>(nullptr));
        if (!send_status.ok()) return;
      }
      const StreamMessage& m = messages[static_cast<size_t>(i)];
      buffers[slot].assign(std::max<size_t>(m.size, 1), 0);
      fill(buffers[slot].data(), m.size, static_cast<uint64_t>(i));
      regions[slot].reset();
      if (m.sender_registers) {
        send_status = pair.send->register_memory(buffers[slot].data(), buffers[slot].size(),
                                                 kHostMemory, &regions[slot]);
        if (!send_status.ok()) return;
      }
      Request* r = nullptr;
      if (sends_wait_for_receives) {
        send_status = isend_retry(pair.send.get(), buffers[slot].data(), m.size, m.tag, &r,
                                  regions[slot].get());
      } else {
        send_status =
            pair.send->isend(buffers[slot].data(), m.size, m.tag, regions[slot].get(), &r);
        if (send_status.ok() && r == nullptr)
          send_status = internal_error("isend refused below kMaxRequests");
      }
      inflight[slot] = r;
    }
    for (Request* r : inflight) {
      if (r != nullptr && send_status.ok())
        send_status = wait_done(pair.send.get(), r, static_cast<size_t*>(nullptr));
    }
  });
  std::vector<std::vector<uint8_t>> buffers(static_cast<size_t>(depth));
  std::vector<std::unique_ptr<MemoryRegion>> regions(static_cast<size_t>(depth));
  std::vector<Request*> inflight(static_cast<size_t>(depth), nullptr);
  std::vector<int> posted_for(static_cast<size_t>(depth), -1);
  int bad = 0;
  auto finish = [&](size_t slot) {
    size_t got = 0;
    Status rs = wait_done(pair.recv.get(), inflight[slot], &got);
    inflight[slot] = nullptr;
    ASSERT_TRUE(rs.ok()) << rs.to_string();
    const int i = posted_for[slot];
    ASSERT_EQ(got, messages[static_cast<size_t>(i)].size) << "message " << i;
    int64_t wrong = first_mismatch(buffers[slot].data(), got, static_cast<uint64_t>(i));
    if (wrong >= 0 && bad++ < 5)
      ADD_FAILURE() << "message " << i << " (" << got << " bytes) differs at " << wrong;
    const size_t past = static_cast<size_t>(
        std::count(buffers[slot].begin() + static_cast<ptrdiff_t>(got), buffers[slot].end(), 0xee));
    if (got < buffers[slot].size() && past != buffers[slot].size() - got && bad++ < 5)
      ADD_FAILURE() << "message " << i << " wrote past its " << got << " bytes";
  };
  auto receive_all = [&] {  // ASSERTs return from here, so the sender is always joined
    for (int i = 0; i < count; ++i) {
      const size_t slot = static_cast<size_t>(i % depth);
      if (inflight[slot] != nullptr) finish(slot);
      if (::testing::Test::HasFatalFailure()) return;
      const StreamMessage& m = messages[static_cast<size_t>(i)];
      buffers[slot].assign(std::max<size_t>(m.capacity, 1), 0xee);
      regions[slot].reset();
      if (!m.sender_registers) {
        ASSERT_TRUE(pair.recv
                        ->register_memory(buffers[slot].data(), buffers[slot].size(), kHostMemory,
                                          &regions[slot])
                        .ok());
      }
      Request* r = nullptr;
      ASSERT_TRUE(irecv_retry(pair.recv.get(), buffers[slot].data(), m.capacity, m.tag, &r,
                              regions[slot].get())
                      .ok());
      inflight[slot] = r;
      posted_for[slot] = i;
    }
    for (int i = std::max(0, count - depth); i < count && !::testing::Test::HasFatalFailure(); ++i)
      finish(static_cast<size_t>(i % depth));  // drain in posting order
  };
  receive_all();
  if (::testing::Test::HasFatalFailure()) pair.recv->abort("receiver test failed");
  sender.join();
  EXPECT_TRUE(send_status.ok()) << send_status.to_string();
  EXPECT_EQ(bad, 0);
}

// The same over a fresh channel of `t`.
inline void stream_messages(Transport* t, bool sends_wait_for_receives,
                            const std::vector<StreamMessage>& messages, int depth) {
  ChannelPair pair;
  Status s = connect_pair(t, &pair);
  ASSERT_TRUE(s.ok()) << s.to_string();
  stream_over(pair, sends_wait_for_receives, messages, depth);
}

}  // namespace ciuic::transport::transport_test
