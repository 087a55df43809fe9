#include "cuda/driver.h"

#include <dlfcn.h>
#include <link.h>

#include <cstddef>

#include <atomic>
#include <mutex>

#include "base/log.h"

namespace ciuic::cuda {
namespace {

// cuda.h's values.
constexpr int kAttrMemoryType = 2;     // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
constexpr int kAttrIsManaged = 8;      // CU_POINTER_ATTRIBUTE_IS_MANAGED
constexpr int kAttrDeviceOrdinal = 9;  // CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
constexpr int kAttrBufferId = 7;       // CU_POINTER_ATTRIBUTE_BUFFER_ID
constexpr int kAttrLegacyIpc = 10;     // CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE
constexpr int kAttrRangeStart = 11;    // CU_POINTER_ATTRIBUTE_RANGE_START_ADDR
constexpr unsigned kMemoryTypeHost = 1, kMemoryTypeDevice = 2, kMemoryTypeUnified = 4;
constexpr CuResult kNotInitialized = 3;  // CUDA_ERROR_NOT_INITIALIZED

std::atomic<const DriverApi*> g_driver{nullptr};
std::mutex g_load_mutex;
// The loader's count of objects loaded so far when libcuda was last looked for, + 1
// (0: never looked). dlopen(RTLD_NOLOAD) walks the library search path (a score of
// failed openat calls, tens of µs): it is asked again only after something new loaded.
std::atomic<unsigned long long> g_adds_when_absent{0};

unsigned long long objects_loaded_so_far() {
  unsigned long long adds = 0;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t size, void* out) {
        if (size >= offsetof(dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds))
          *static_cast<unsigned long long*>(out) = info->dlpi_adds;
        return 1;  // the first object carries the counter: stop there
      },
      &adds);
  return adds;
}

template <typename Fn>
void resolve(void* lib, const char* name, Fn* out) {
  *out = reinterpret_cast<Fn>(dlsym(lib, name));
}

}  // namespace

const DriverApi* loaded_driver() {
  if (const DriverApi* api = g_driver.load(std::memory_order_acquire)) return api;
  const unsigned long long adds = objects_loaded_so_far();
  if (adds != 0 && g_adds_when_absent.load(std::memory_order_relaxed) == adds + 1) return nullptr;
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (const DriverApi* api = g_driver.load(std::memory_order_acquire)) return api;
  // RTLD_NOLOAD: only if already loaded (by the application, or by ciuic's CUDA runtime).
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (lib == nullptr) {
    if (adds != 0) g_adds_when_absent.store(adds + 1, std::memory_order_relaxed);
    return nullptr;
  }
  static DriverApi api;  // filled once, then published; the library stays loaded
  resolve(lib, "cuPointerGetAttributes", &api.pointer_get_attributes);
  resolve(lib, "cuGetErrorString", &api.get_error_string);
  resolve(lib, "cuStreamWaitValue32_v2", &api.stream_wait_value32);
  if (api.pointer_get_attributes == nullptr) {
    CIUIC_LOG_WARN(log::kApi,
                   "libcuda.so.1 is loaded but lacks cuPointerGetAttributes (a driver older than "
                   "CUDA 7?): every buffer is taken for host memory");
    return nullptr;
  }
  g_driver.store(&api, std::memory_order_release);
  return &api;
}

std::string driver_error(const DriverApi& api, CuResult result) {
  const char* text = nullptr;
  if (api.get_error_string != nullptr) api.get_error_string(result, &text);
  return "CUDA driver error " + std::to_string(result) +
         (text ? std::string(" (") + text + ")" : "");
}

const char* memory_name(Memory m) {
  switch (m) {
    case Memory::kHost:
      return "pageable host";
    case Memory::kPinned:
      return "pinned host";
    case Memory::kDevice:
      return "device";
    case Memory::kManaged:
      return "managed";
  }
  return "unknown";
}

Status classify(const void* ptr, PointerInfo* out) { return classify(loaded_driver(), ptr, out); }

Status classify(const DriverApi* api, const void* ptr, PointerInfo* out) {
  *out = PointerInfo{};
  if (api == nullptr || ptr == nullptr) return Status::Ok();
  unsigned memory_type = 0, is_managed = 0;
  int device = -1;
  int attributes[3] = {kAttrMemoryType, kAttrIsManaged, kAttrDeviceOrdinal};
  void* data[3] = {&memory_type, &is_managed, &device};
  // Unlike the singular call, this one succeeds on memory CUDA does not know (zeroes).
  CuResult r = api->pointer_get_attributes(3, attributes, data, reinterpret_cast<CuDevicePtr>(ptr));
  if (r == kNotInitialized) return Status::Ok();  // loaded but never initialised: no CUDA memory
  if (r != 0) return internal_error("cuPointerGetAttributes: " + driver_error(*api, r));
  if (is_managed & 0xff) {
    out->memory = Memory::kManaged;
  } else if (memory_type == kMemoryTypeDevice || memory_type == kMemoryTypeUnified) {
    out->memory = Memory::kDevice;
  } else if (memory_type == kMemoryTypeHost) {
    out->memory = Memory::kPinned;
  }
  out->device = out->memory == Memory::kHost ? -1 : device;
  return Status::Ok();
}

Status allocation_of(const void* ptr, AllocationInfo* out) {
  *out = AllocationInfo{};
  const DriverApi* api = loaded_driver();
  if (api == nullptr || ptr == nullptr) return Status::Ok();
  unsigned long long buffer_id = 0;
  CuDevicePtr base = 0;
  uint32_t legacy = 0;  // a bool in the driver; zeroed word, low byte read
  unsigned memory_type = 0, is_managed = 0;
  int attributes[5] = {kAttrBufferId, kAttrRangeStart, kAttrLegacyIpc, kAttrMemoryType,
                       kAttrIsManaged};
  void* data[5] = {&buffer_id, &base, &legacy, &memory_type, &is_managed};
  CuResult r = api->pointer_get_attributes(5, attributes, data, reinterpret_cast<CuDevicePtr>(ptr));
  if (r == kNotInitialized) return Status::Ok();
  if (r != 0) return internal_error("cuPointerGetAttributes: " + driver_error(*api, r));
  const bool device = memory_type == kMemoryTypeDevice && (is_managed & 0xff) == 0;
  out->base = base;
  out->buffer_id = buffer_id;
  out->legacy_ipc = device && (legacy & 0xff) != 0 && base != 0 && buffer_id != 0;
  return Status::Ok();
}

}  // namespace ciuic::cuda
