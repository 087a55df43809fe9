"""PyTorch over NCCL over the ciuic plugin. With a GPU per rank, set NCCL_P2P_DISABLE=1
NCCL_SHM_DISABLE=1 so that every byte crosses the plugin; on a one-GPU machine both
processes use GPU 0 and NCCL takes them for two hosts (NCCL_HOSTID per rank; run under MPS).

    NCCL_NET_PLUGIN=ciuic NCCL_NET=ciuic LD_LIBRARY_PATH=build/plugins/nccl:$LD_LIBRARY_PATH \
        torchrun --nproc-per-node 2 tests/gpu/torch_plugin_check.py

Checks a 256 MiB all_reduce and all_gather exactly and runs a few DDP steps whose replicas
must stay equal; exits non-zero on any mismatch.
"""
import os
import sys

import torch
import torch.distributed as dist


def main() -> int:
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    gpu = rank if torch.cuda.device_count() >= world else 0
    if torch.cuda.device_count() < world:
        os.environ.setdefault("NCCL_HOSTID", f"host{rank}")  # one GPU, two "hosts"
    torch.cuda.set_device(gpu)
    dev = torch.device(f"cuda:{gpu}")
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=dev)

    n = 64 * 1024 * 1024  # 256 MiB of float32
    x = torch.full((n,), float(rank + 1), device=dev)
    dist.all_reduce(x)
    reduce_ok = bool(torch.all(x == world * (world + 1) / 2).item())

    base = torch.arange(n // world, device=dev, dtype=torch.float32)
    parts = [torch.empty_like(base) for _ in range(world)]
    dist.all_gather(parts, base + rank)
    gather_ok = all(torch.equal(parts[r], base + r) for r in range(world))

    torch.manual_seed(0)  # same initial weights everywhere
    model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.GELU(),
                                torch.nn.Linear(2048, 2048)).to(dev)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[gpu], bucket_cap_mb=4)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    for step in range(5):
        torch.manual_seed(1000 * rank + step)  # different data on every rank
        loss = ddp(torch.randn(64, 2048, device=dev)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    replicas = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(replicas, flat)
    ddp_ok = all(torch.equal(replicas[0], r) for r in replicas)

    print(f"rank {rank}: all_reduce 256 MiB {'OK' if reduce_ok else 'WRONG'}, "
          f"all_gather {'OK' if gather_ok else 'WRONG'}, "
          f"DDP replicas after 5 steps {'equal' if ddp_ok else 'DIFFER'}", flush=True)
    dist.destroy_process_group()
    return 0 if (reduce_ok and gather_ok and ddp_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
