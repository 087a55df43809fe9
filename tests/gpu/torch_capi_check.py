"""ciuic's C API on CUDA tensors through ctypes, beside torch.distributed's NCCL on the
same data: two processes on one GPU (NCCL_HOSTID per rank lets NCCL put two ranks on one
GPU; it then goes over its network path). Run under torchrun --nproc-per-node 2 with
CIUIC_LIB naming libciuic.so. Prints "torch check: N of M matched" on rank 0.

Every case is exact: two ranks, so each reduction is one operation on one pair of values
(a + b, max(a, b), (a + b) / 2), the same whoever computes it.
"""
import ctypes
import os
import sys

import torch
import torch.distributed as dist

rank = int(os.environ["RANK"])
world = int(os.environ["WORLD_SIZE"])
os.environ["NCCL_HOSTID"] = f"host{rank}"
os.environ.setdefault("CIUIC_SOCKET_IFNAME", "lo")
torch.cuda.set_device(0)
dist.init_process_group("nccl", device_id=torch.device("cuda", 0))

lib = ctypes.CDLL(os.environ["CIUIC_LIB"])
vp, sz, i = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
lib.ciuic_comm_init_env.argtypes = [ctypes.POINTER(vp)]
lib.ciuic_comm_get_last_error.restype = ctypes.c_char_p
lib.ciuic_comm_get_last_error.argtypes = [vp]
lib.ciuic_allreduce.argtypes = [vp, vp, sz, i, i, vp, vp]
lib.ciuic_allgather.argtypes = [vp, vp, sz, i, vp, vp]
lib.ciuic_reduce_scatter.argtypes = [vp, vp, sz, i, i, vp, vp]
lib.ciuic_broadcast.argtypes = [vp, vp, sz, i, i, vp, vp]
lib.ciuic_comm_destroy.argtypes = [vp]

comm = vp()
if lib.ciuic_comm_init_env(ctypes.byref(comm)) != 0:
    sys.exit(f"rank {rank}: ciuic_comm_init_env: {lib.ciuic_comm_get_last_error(None).decode()}")

DTYPES = {torch.int8: 0, torch.uint8: 1, torch.int32: 2, torch.int64: 4, torch.float16: 6,
          torch.bfloat16: 7, torch.float32: 8, torch.float64: 9}
OPS = {"sum": (0, dist.ReduceOp.SUM), "max": (3, dist.ReduceOp.MAX), "min": (2, dist.ReduceOp.MIN),
       "avg": (4, dist.ReduceOp.AVG)}


def check(rc, what):
    if rc != 0:
        raise RuntimeError(f"rank {rank}: {what}: {lib.ciuic_comm_get_last_error(comm).decode()}")


def data(dtype, n, seed):
    g = torch.Generator(device="cuda").manual_seed(seed * 100 + rank)
    if dtype.is_floating_point:
        return torch.randn(n, generator=g, device="cuda").to(dtype)
    hi = 100 if dtype in (torch.int8, torch.uint8) else 1 << 20
    return torch.randint(0, hi, (n,), generator=g, device="cuda", dtype=torch.int64).to(dtype)


matched = total = 0
failures = []
stream = torch.cuda.Stream()
n = (1 << 20) + 3
seed = 0
with torch.cuda.stream(stream):
    s = stream.cuda_stream
    for dtype, code in DTYPES.items():
        for name, (op, top) in OPS.items():
            if name == "avg" and not dtype.is_floating_point:
                continue  # NCCL's integer average is not ciuic's (which truncates)
            seed += 1
            x = data(dtype, n, seed)
            mine = (x * 1).contiguous()  # a kernel on this stream writes the input
            check(lib.ciuic_allreduce(mine.data_ptr(), mine.data_ptr(), n, code, op, comm, s), "allreduce")
            mine.add_(0)  # and one reads the output, with no host sync in between
            theirs = x.clone()
            dist.all_reduce(theirs, op=top)
            torch.cuda.current_stream().synchronize()
            total += 1
            if torch.equal(mine, theirs):
                matched += 1
            else:
                failures.append(f"allreduce {dtype} {name}")
        # allgather, reduce_scatter, broadcast on the same datatype
        x = data(dtype, n, seed + 1000)
        out_mine = torch.empty(n * world, dtype=dtype, device="cuda")
        check(lib.ciuic_allgather(x.data_ptr(), out_mine.data_ptr(), n, code, comm, s), "allgather")
        out_theirs = torch.empty_like(out_mine)
        dist.all_gather_into_tensor(out_theirs, x)
        big = data(dtype, n * world, seed + 2000)
        rs_mine = torch.empty(n, dtype=dtype, device="cuda")
        check(lib.ciuic_reduce_scatter(big.data_ptr(), rs_mine.data_ptr(), n, code, 0, comm, s), "reduce_scatter")
        rs_theirs = torch.empty_like(rs_mine)
        dist.reduce_scatter_tensor(rs_theirs, big)
        b_mine = x.clone()
        check(lib.ciuic_broadcast(b_mine.data_ptr(), b_mine.data_ptr(), n, code, 1, comm, s), "broadcast")
        b_theirs = x.clone()
        dist.broadcast(b_theirs, src=1)
        torch.cuda.current_stream().synchronize()
        for what, a, b in (("allgather", out_mine, out_theirs), ("reduce_scatter", rs_mine, rs_theirs),
                           ("broadcast", b_mine, b_theirs)):
            total += 1
            if torch.equal(a, b):
                matched += 1
            else:
                failures.append(f"{what} {dtype}")

lib.ciuic_comm_destroy(comm)
for f in failures:
    print(f"rank {rank}: mismatch: {f}", flush=True)
if rank == 0:
    print(f"torch check: {matched} of {total} matched", flush=True)
dist.destroy_process_group()
sys.exit(0 if matched == total else 1)
