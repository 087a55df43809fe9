/*
 * ciuic — collective communication for distributed training.
 *
 * A stable C ABI: opaque handles, result codes, plain structs. Nothing in this
 * header throws, and no user error aborts the process: every call returns a
 * ciuic_result_t, and ciuic_comm_get_last_error() says what went wrong.
 *
 * Buffers are host memory, or CUDA memory (device, managed, pinned host) in builds
 * with CUDA: a call with CUDA buffers or a stream is enqueued on the stream and returns,
 * as NCCL's are (docs/gpu.md). A build without CUDA returns CIUIC_ERR_UNSUPPORTED for
 * them, with a message saying so.
 */
#ifndef CIUIC_CIUIC_H
#define CIUIC_CIUIC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CIUIC_VERSION_MAJOR 0
#define CIUIC_VERSION_MINOR 1
#define CIUIC_VERSION_PATCH 0
/* One integer that orders releases: 0.1.0 -> 100. */
#define CIUIC_VERSION_CODE(major, minor, patch) ((major) * 10000 + (minor) * 100 + (patch))
#define CIUIC_VERSION \
  CIUIC_VERSION_CODE(CIUIC_VERSION_MAJOR, CIUIC_VERSION_MINOR, CIUIC_VERSION_PATCH)

#if defined(__GNUC__)
#define CIUIC_API __attribute__((visibility("default")))
#else
#define CIUIC_API
#endif

/* Result codes. Success is 0; every error is a distinct positive value. */
typedef enum {
  CIUIC_SUCCESS = 0,
  CIUIC_ERR_INVALID_ARGUMENT = 1, /* the caller passed something wrong; nothing happened */
  CIUIC_ERR_SYSTEM = 2,           /* a system call failed (socket, memory, thread) */
  CIUIC_ERR_REMOTE = 3,           /* a peer died, closed its connection or reported an error */
  CIUIC_ERR_TIMEOUT = 4,          /* a deadline passed (CIUIC_TIMEOUT_MS) */
  CIUIC_ERR_ABORTED = 5,          /* the communicator was aborted */
  CIUIC_ERR_UNSUPPORTED = 6,      /* valid request this build or transport cannot serve */
  CIUIC_ERR_INTERNAL = 7,         /* a bug in ciuic: please report it with the log */
  CIUIC_IN_PROGRESS = 8           /* not an error: a non-blocking operation is still running */
} ciuic_result_t;

typedef enum {
  CIUIC_INT8 = 0,
  CIUIC_UINT8 = 1,
  CIUIC_INT32 = 2,
  CIUIC_UINT32 = 3,
  CIUIC_INT64 = 4,
  CIUIC_UINT64 = 5,
  CIUIC_FLOAT16 = 6,
  CIUIC_BFLOAT16 = 7,
  CIUIC_FLOAT32 = 8,
  CIUIC_FLOAT64 = 9,
  CIUIC_FLOAT8_E4M3 = 10, /* OCP FP8 E4M3: reduced in float, overflow saturates to 448 */
  CIUIC_FLOAT8_E5M2 = 11, /* OCP FP8 E5M2: reduced in float, finite overflow saturates */
  CIUIC_NUM_DATATYPES = 12
} ciuic_datatype_t;

typedef enum {
  CIUIC_SUM = 0,
  CIUIC_PROD = 1,
  CIUIC_MIN = 2,
  CIUIC_MAX = 3,
  CIUIC_AVG = 4, /* sum divided by the number of ranks (integer division for integers) */
  CIUIC_NUM_OPS = 5
} ciuic_op_t;

/* Pass as sendbuf to operate in place (MPI_IN_PLACE); see docs/api.md per collective. */
#define CIUIC_IN_PLACE ((const void*)1)

/* Opaque handles. */
typedef struct ciuic_comm* ciuic_comm_t;
typedef struct ciuic_request* ciuic_request_t;
/* A cudaStream_t. NULL with host buffers: the call runs on the calling thread; NULL with
 * CUDA buffers: the legacy default stream. */
typedef void* ciuic_stream_t;

#define CIUIC_UNIQUE_ID_BYTES 128
/* Root address and job secret; produced by one rank, passed to all by any launcher. */
typedef struct {
  char internal[CIUIC_UNIQUE_ID_BYTES];
} ciuic_unique_id_t;

/* ---- library ---- */
CIUIC_API int ciuic_get_version(void); /* CIUIC_VERSION of the loaded library */
CIUIC_API const char* ciuic_result_string(ciuic_result_t result);
CIUIC_API const char* ciuic_datatype_name(ciuic_datatype_t datatype);
CIUIC_API size_t ciuic_datatype_size(ciuic_datatype_t datatype); /* 0 if invalid */

/* ---- communicators ---- */
/* Starts the bootstrap root in this process and returns its address and a fresh secret. */
CIUIC_API ciuic_result_t ciuic_get_unique_id(ciuic_unique_id_t* unique_id);
/* Collective over `nranks` processes; blocks until all have joined or CIUIC_TIMEOUT_MS. */
CIUIC_API ciuic_result_t ciuic_comm_init_rank(ciuic_comm_t* comm, int nranks,
                                              ciuic_unique_id_t unique_id, int rank);
/* Rank, size and root from CIUIC_RANK/CIUIC_WORLD_SIZE/CIUIC_ROOT, torchrun, Open MPI or Slurm. */
CIUIC_API ciuic_result_t ciuic_comm_init_env(ciuic_comm_t* comm);
/* Collective over `comm`: ranks with the same color form a new communicator, ordered by
 * (key, old rank). color < 0 (CIUIC_SPLIT_NOCOLOR) gives *newcomm = NULL. */
#define CIUIC_SPLIT_NOCOLOR (-1)
CIUIC_API ciuic_result_t ciuic_comm_split(ciuic_comm_t comm, int color, int key,
                                          ciuic_comm_t* newcomm);
/* Frees everything the communicator holds. Safe after an error or an abort. */
CIUIC_API ciuic_result_t ciuic_comm_destroy(ciuic_comm_t comm);
/* Callable from any thread: in-flight and later operations fail with CIUIC_ERR_ABORTED.
 * Local and bounded: never waits for peers or for a thread that may be stuck. */
CIUIC_API ciuic_result_t ciuic_comm_abort(ciuic_comm_t comm);
CIUIC_API ciuic_result_t ciuic_comm_rank(ciuic_comm_t comm, int* rank);
CIUIC_API ciuic_result_t ciuic_comm_size(ciuic_comm_t comm, int* size);
/* The deadline, in ms, of every operation issued on `comm` from now on (a job whose
 * checkpoint all-gather legitimately takes minutes, or a health probe that must fail in a
 * second). 0 restores CIUIC_TIMEOUT_MS; negative is CIUIC_ERR_INVALID_ARGUMENT. A split
 * inherits its parent's. Operations already issued keep the deadline they started with. */
CIUIC_API ciuic_result_t ciuic_comm_set_timeout(ciuic_comm_t comm, int64_t timeout_ms);
CIUIC_API ciuic_result_t ciuic_comm_get_timeout(ciuic_comm_t comm, int64_t* timeout_ms);
/* The last error's message on this communicator (which rank, which peer, what happened);
 * "" if none. Valid until the next call on the communicator. Also works on NULL (errors
 * of calls that had no communicator yet, e.g. init, per thread). */
CIUIC_API const char* ciuic_comm_get_last_error(ciuic_comm_t comm);

/* ---- collectives (blocking) ----
 * count is in elements of `datatype`. allgather: sendbuf holds count, recvbuf count*nranks.
 * reduce_scatter: sendbuf holds count*nranks, recvbuf count. alltoall: both count*nranks,
 * count elements to each peer. */
CIUIC_API ciuic_result_t ciuic_allreduce(const void* sendbuf, void* recvbuf, size_t count,
                                         ciuic_datatype_t datatype, ciuic_op_t op,
                                         ciuic_comm_t comm, ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_allgather(const void* sendbuf, void* recvbuf, size_t count,
                                         ciuic_datatype_t datatype, ciuic_comm_t comm,
                                         ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_reduce_scatter(const void* sendbuf, void* recvbuf, size_t count,
                                              ciuic_datatype_t datatype, ciuic_op_t op,
                                              ciuic_comm_t comm, ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_broadcast(const void* sendbuf, void* recvbuf, size_t count,
                                         ciuic_datatype_t datatype, int root, ciuic_comm_t comm,
                                         ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_reduce(const void* sendbuf, void* recvbuf, size_t count,
                                      ciuic_datatype_t datatype, ciuic_op_t op, int root,
                                      ciuic_comm_t comm, ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_alltoall(const void* sendbuf, void* recvbuf, size_t count,
                                        ciuic_datatype_t datatype, ciuic_comm_t comm,
                                        ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_send(const void* sendbuf, size_t count, ciuic_datatype_t datatype,
                                    int peer, ciuic_comm_t comm, ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_recv(void* recvbuf, size_t count, ciuic_datatype_t datatype,
                                    int peer, ciuic_comm_t comm, ciuic_stream_t stream);
CIUIC_API ciuic_result_t ciuic_barrier(ciuic_comm_t comm, ciuic_stream_t stream);

/* ---- collectives (non-blocking) ----
 * Same arguments, plus a request that ciuic_wait/ciuic_test complete. Operations on one
 * communicator run in the order they were issued. Buffers must stay valid until done. */
CIUIC_API ciuic_result_t ciuic_iallreduce(const void* sendbuf, void* recvbuf, size_t count,
                                          ciuic_datatype_t datatype, ciuic_op_t op,
                                          ciuic_comm_t comm, ciuic_stream_t stream,
                                          ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_iallgather(const void* sendbuf, void* recvbuf, size_t count,
                                          ciuic_datatype_t datatype, ciuic_comm_t comm,
                                          ciuic_stream_t stream, ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_ireduce_scatter(const void* sendbuf, void* recvbuf, size_t count,
                                               ciuic_datatype_t datatype, ciuic_op_t op,
                                               ciuic_comm_t comm, ciuic_stream_t stream,
                                               ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_ibroadcast(const void* sendbuf, void* recvbuf, size_t count,
                                          ciuic_datatype_t datatype, int root, ciuic_comm_t comm,
                                          ciuic_stream_t stream, ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_ireduce(const void* sendbuf, void* recvbuf, size_t count,
                                       ciuic_datatype_t datatype, ciuic_op_t op, int root,
                                       ciuic_comm_t comm, ciuic_stream_t stream,
                                       ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_ialltoall(const void* sendbuf, void* recvbuf, size_t count,
                                         ciuic_datatype_t datatype, ciuic_comm_t comm,
                                         ciuic_stream_t stream, ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_isend(const void* sendbuf, size_t count, ciuic_datatype_t datatype,
                                     int peer, ciuic_comm_t comm, ciuic_stream_t stream,
                                     ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_irecv(void* recvbuf, size_t count, ciuic_datatype_t datatype,
                                     int peer, ciuic_comm_t comm, ciuic_stream_t stream,
                                     ciuic_request_t* request);
CIUIC_API ciuic_result_t ciuic_ibarrier(ciuic_comm_t comm, ciuic_stream_t stream,
                                        ciuic_request_t* request);

/* Blocks until the request completes (or its deadline passes), then frees it and sets
 * *request to NULL. Returns the operation's result. */
CIUIC_API ciuic_result_t ciuic_wait(ciuic_request_t* request);
/* Never blocks. *done = 1 when complete: the request is then freed, *request = NULL and
 * the operation's result is returned. *done = 0 returns CIUIC_SUCCESS. */
CIUIC_API ciuic_result_t ciuic_test(ciuic_request_t* request, int* done);

/* ---- groups (CUDA streams) ----
 * Between ciuic_group_start and ciuic_group_end (per thread; groups nest, the outermost end
 * counts), send/recv calls on CUDA streams are collected, and ciuic_group_end enqueues each
 * communicator's as one operation on their stream: an exchange in which every rank sends
 * first cannot deadlock. A communicator's calls in one group share one stream. Collectives
 * and host-buffer calls inside a group are issued at once. A request of a grouped call
 * completes only after ciuic_group_end. */
CIUIC_API ciuic_result_t ciuic_group_start(void);
CIUIC_API ciuic_result_t ciuic_group_end(void);

#ifdef __cplusplus
}
#endif

#endif /* CIUIC_CIUIC_H */
