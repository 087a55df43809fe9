#include "transports/common/handle_codec.h"

#include <cstring>
#include <string>

#include "base/le_bytes.h"

namespace ciuic::transport::common {

void encode_handle_header(const HandleFormat& format, uint16_t word, ConnectHandle* out) {
  *out = ConnectHandle{};
  put_u32(out->bytes, format.magic);
  put_u16(out->bytes + 4, format.version);
  put_u16(out->bytes + 6, word);
}

Status decode_handle_header(const HandleFormat& format, const ConnectHandle& in, uint16_t* word) {
  if (get_u32(in.bytes) != format.magic)
    return invalid_argument(std::string("not ") + format.noun +
                            " (bad magic): made by another transport (is CIUIC_TRANSPORT the same "
                            "on every rank?) or corrupted on the way");
  const uint16_t version = get_u16(in.bytes + 4);
  if (version != format.version)
    return invalid_argument(std::string(format.name) + " handle has wire version " +
                            std::to_string(version) + ", this build speaks " +
                            std::to_string(format.version) +
                            ": run the same ciuic version everywhere");
  *word = get_u16(in.bytes + 6);
  return Status::Ok();
}

void SocketHandleCodec::encode(const SocketHandle& in, ConnectHandle* out) const {
  encode_handle_header(format_, 0, out);
  in.address.pack(out->bytes + kHandleHeaderBytes);
  std::memcpy(out->bytes + kHandleHeaderBytes + net::SocketAddress::kPackedBytes, in.token.data(),
              in.token.size());
}

Status SocketHandleCodec::decode(const ConnectHandle& in, SocketHandle* out) const {
  uint16_t word = 0;
  CIUIC_RETURN_IF_ERROR(decode_handle_header(format_, in, &word));
  if (word != 0)
    return invalid_argument(std::string(format_.name) + " handle with " + std::to_string(word) +
                            " in its reserved field (0 expected): corrupted on the way?");
  CIUIC_RETURN_IF_ERROR(net::SocketAddress::unpack(in.bytes + kHandleHeaderBytes, &out->address));
  std::memcpy(out->token.data(), in.bytes + kHandleHeaderBytes + net::SocketAddress::kPackedBytes,
              out->token.size());
  return Status::Ok();
}

}  // namespace ciuic::transport::common
