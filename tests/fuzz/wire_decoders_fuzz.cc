// Every decoder of bytes that arrive from the network or from another process: the TCP
// transport's handle, stripe hello and frame header, the ibverbs transport's handle,
// connection record and side-channel header, the shm transport's handle, hello, reply and
// ABORT frame header, the bootstrap store's join payload and request/reply headers, the
// unique id, addresses. The first byte picks the decoder: 0xf0..0xfe the shm ones (a
// range the corpus did not use, so its inputs keep their decoders), any other its value
// modulo 11. Whatever the rest is, a decoder must return an error or a value within its
// bounds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/net.h"
#include "core/bootstrap.h"
#include "core/store_protocol.h"
#include "transports/ibverbs/ib_wire.h"
#include "transports/shm/shm_wire.h"
#include "transports/tcp/tcp_wire.h"

namespace {

template <size_t N>
void fixed(const uint8_t* data, size_t size, uint8_t (&out)[N]) {
  std::memset(out, 0, N);
  std::memcpy(out, data, size < N ? size : N);
}

void check(bool condition) {
  if (!condition) __builtin_trap();
}

// The shm transport's decoders; `which` is 0..3.
void shm_decoders(int which, const uint8_t* data, size_t size) {
  using namespace ciuic::transport;
  switch (which) {
    case 0: {
      ConnectHandle handle;
      fixed(data, size, handle.bytes);
      shm::HandleContents contents;
      if (shm::decode_handle(handle, &contents).ok()) {
        check(!contents.name.empty() && contents.name.size() <= shm::kMaxNameBytes);
        check(contents.name.find('\0') == std::string::npos);
      }
      break;
    }
    case 1: {
      shm::Hello hello;
      if (shm::decode_hello(data, size, &hello).ok()) {
        check(static_cast<uint32_t>(hello.cma) <= static_cast<uint32_t>(shm::CmaSetting::kOff));
        uint8_t again[shm::kHelloBytes];  // what decodes encodes back to the same values
        shm::encode_hello(hello, again);
        shm::Hello twice;
        check(shm::decode_hello(again, sizeof(again), &twice).ok());
        check(twice.ring_bytes == hello.ring_bytes && twice.cma == hello.cma &&
              twice.probe_address == hello.probe_address && twice.probe_value == hello.probe_value);
      }
      break;
    }
    case 2: {
      shm::Path path;
      if (shm::decode_reply(data, size, &path).ok())
        check(path == shm::Path::kCma || path == shm::Path::kCopy);
      break;
    }
    default: {
      uint8_t header[shm::kAbortHeaderBytes];
      fixed(data, size, header);
      size_t length = 0;
      if (shm::decode_abort_header(header, &length).ok()) check(length <= shm::kMaxAbortReason);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ciuic;
  if (size == 0) return 0;
  const uint8_t which = data[0];
  ++data;
  --size;
  if (which >= 0xf0 && which < 0xff) {
    shm_decoders((which - 0xf0) % 4, data, size);
    return 0;
  }
  switch (which % 11) {
    case 0: {
      transport::ConnectHandle handle;
      fixed(data, size, handle.bytes);
      transport::common::SocketHandle contents;
      (void)transport::tcp::kHandle.decode(handle, &contents);
      break;
    }
    case 1: {
      transport::tcp::StripeHello hello;
      if (transport::tcp::decode_hello(data, size, &hello).ok()) {
        check(hello.stripe_count >= 1 && hello.stripe_count <= transport::tcp::kMaxStripes);
        check(hello.stripe_index < hello.stripe_count);
      }
      break;
    }
    case 2: {
      uint8_t header[transport::tcp::kFrameHeaderBytes];
      fixed(data, size, header);
      transport::tcp::FrameHeader frame;
      if (transport::tcp::decode_frame(header, &frame).ok()) {
        check(frame.type == transport::tcp::FrameType::kData ||
              frame.type == transport::tcp::FrameType::kAbort);
      }
      break;
    }
    case 3: {
      core::store::Join join;
      if (core::store::decode_join(std::vector<uint8_t>(data, data + size), &join).ok()) {
        check(join.name_space.size() <= core::store::kMaxNamespaceBytes);
      }
      break;
    }
    case 4: {
      uint8_t header[core::store::kRequestHeaderBytes];
      fixed(data, size, header);
      (void)core::store::decode_request_header(header);
      uint8_t reply[core::store::kReplyHeaderBytes];
      fixed(data, size, reply);
      (void)core::store::decode_reply_header(reply);
      break;
    }
    case 5: {
      ciuic_unique_id_t id;
      fixed(data, size, reinterpret_cast<uint8_t(&)[sizeof(id.internal)]>(id.internal));
      core::UniqueId decoded;
      (void)core::UniqueId::decode(id, &decoded);
      break;
    }
    case 6: {
      // Numeric forms only: a host name would go to the resolver, which is not under test.
      for (size_t i = 0; i < size; ++i) {
        if (std::strchr("0123456789abcdefABCDEF.:[]", data[i]) == nullptr || data[i] == 0) return 0;
      }
      net::SocketAddress address;
      (void)net::parse_address(std::string_view(reinterpret_cast<const char*>(data), size), 1234,
                               &address);
      break;
    }
    case 8: {
      transport::ConnectHandle handle;
      fixed(data, size, handle.bytes);
      transport::common::SocketHandle contents;
      (void)transport::ib::kHandle.decode(handle, &contents);
      break;
    }
    case 9: {
      transport::ib::ConnRecord record;
      (void)transport::ib::decode_record(data, size, &record);
      break;
    }
    case 10: {
      uint8_t header[transport::ib::kSideHeaderBytes];
      fixed(data, size, header);
      transport::ib::SideFrame type;
      uint32_t length = 0;
      (void)transport::ib::decode_side_header(header, &type, &length);
      break;
    }
    default: {
      uint8_t packed[net::SocketAddress::kPackedBytes];
      fixed(data, size, packed);
      net::SocketAddress address;
      if (net::SocketAddress::unpack(packed, &address).ok()) (void)address.to_string();
      break;
    }
  }
  return 0;
}
