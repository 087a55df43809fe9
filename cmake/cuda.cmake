# CUDA support (docs/gpu.md). CIUIC_CUDA=AUTO builds it where the toolkit and nvcc are
# found, ON insists, OFF leaves the library CPU-only (device buffers then get
# CIUIC_ERR_UNSUPPORTED saying so).
#
# The CUDA runtime is linked statically (CUDA::cudart_static) and its symbols stay inside
# libciuic.so (--exclude-libs): the library needs no libcudart at run time and loads on a
# machine without a GPU driver, because the static runtime opens libcuda.so.1 only when
# ciuic first serves a device buffer. Pointer classification never goes through the
# runtime at all: it asks the driver only once the process has loaded it (src/cuda/driver.cc).
set(CIUIC_CUDA "AUTO" CACHE STRING "CUDA support: AUTO (where the toolkit is found), ON or OFF")
set_property(CACHE CIUIC_CUDA PROPERTY STRINGS AUTO ON OFF)
set(CIUIC_HAVE_CUDA OFF)
if(NOT CIUIC_CUDA STREQUAL "OFF")
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  find_package(CUDAToolkit QUIET)
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND)
    # Hopper (H100/H200) at least; override with -DCMAKE_CUDA_ARCHITECTURES="90;100".
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    set(CIUIC_HAVE_CUDA ON)
    message(STATUS "ciuic: CUDA ${CUDAToolkit_VERSION} (architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(CIUIC_CUDA STREQUAL "ON")
    message(FATAL_ERROR "CIUIC_CUDA=ON but no CUDA toolkit with nvcc was found "
                        "(set CUDAToolkit_ROOT or CMAKE_CUDA_COMPILER)")
  else()
    message(STATUS "ciuic: no CUDA toolkit found: CPU-only build")
  endif()
endif()

# Called once the library targets exist.
function(ciuic_add_cuda)
  if(NOT CIUIC_HAVE_CUDA)
    return()
  endif()
  file(GLOB CIUIC_CUDA_KERNELS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cu)
  # The IPC kernels, one translation unit per datatype: 48 kernels in one file took minutes
  # of a single ptxas; twelve files build in parallel.
  foreach(entry "INT8|dev::Plain<int8_t>" "UINT8|dev::Plain<uint8_t>"
                "INT32|dev::Plain<int32_t>" "UINT32|dev::Plain<uint32_t>"
                "INT64|dev::Plain<int64_t>" "UINT64|dev::Plain<uint64_t>"
                "FLOAT16|dev::Half" "BFLOAT16|dev::Bfloat16"
                "FLOAT32|dev::Plain<float>" "FLOAT64|dev::Plain<double>"
                "FLOAT8_E4M3|dev::Float8<fp8::E4m3>" "FLOAT8_E5M2|dev::Float8<fp8::E5m2>")
    string(REPLACE "|" ";" entry "${entry}")
    list(GET entry 0 name)
    list(GET entry 1 CIUIC_IPC_CODEC)
    set(CIUIC_IPC_DATATYPE "CIUIC_${name}")
    string(TOLOWER "${name}" lower)
    set(generated ${PROJECT_BINARY_DIR}/generated/cuda/ipc_kernels_${lower}.cu)
    configure_file(${PROJECT_SOURCE_DIR}/src/cuda/ipc_kernels_datatype.cu.in ${generated} @ONLY)
    list(APPEND CIUIC_CUDA_KERNELS ${generated})
  endforeach()
  add_library(ciuic_cuda_kernels OBJECT ${CIUIC_CUDA_KERNELS})
  target_include_directories(ciuic_cuda_kernels PRIVATE ${PROJECT_SOURCE_DIR}/include
                                                        ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
  set_target_properties(ciuic_cuda_kernels PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CUDA_VISIBILITY_PRESET hidden
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON)
  target_compile_definitions(ciuic_cuda_kernels PRIVATE CIUIC_HAVE_CUDA=1)
  target_compile_options(ciuic_cuda_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter --expt-relaxed-constexpr>)
  if(CIUIC_WERROR)
    target_compile_options(ciuic_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>)
  endif()

  target_compile_definitions(ciuic_objects PUBLIC CIUIC_HAVE_CUDA=1)
  target_link_libraries(ciuic_objects PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
  target_sources(ciuic PRIVATE $<TARGET_OBJECTS:ciuic_cuda_kernels>)
  target_sources(ciuic_internal PRIVATE $<TARGET_OBJECTS:ciuic_cuda_kernels>)
  target_link_libraries(ciuic PRIVATE CUDA::cudart_static ${CMAKE_DL_LIBS})
  # The static runtime's symbols must not be exported: a process that also loads libcudart
  # (PyTorch) would otherwise bind one runtime's calls to the other's definitions.
  target_link_options(ciuic PRIVATE -Wl,--exclude-libs,libcudart_static.a)
endfunction()
