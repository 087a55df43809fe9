"""What a user of DDP feels: the step time of a 2 x Linear(8192, 8192) + GELU MLP
(~134 M parameters, 537 MB of fp32 gradients a step, batch 256, bucket_cap_mb=64),
20 timed steps after 5 warm-up, one GPU per rank. The network path is whatever the
environment selects (NCCL_NET_PLUGIN=ciuic, NCCL_NET=Socket, NVLink ...), so one script
measures them all in one call:

    torchrun --nproc-per-node 2 perftests/gpu/ddp_step.py [--label NAME] [--compute-only]

Prints one line from rank 0: label, ms/step (median of the timed steps), and whether the
replicas are equal after training.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default=os.environ.get("NCCL_NET", "default"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compute-only", action="store_true", help="no DDP: the step without communication")
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    gpu = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
    torch.cuda.set_device(gpu)
    dev = torch.device(f"cuda:{gpu}")
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=dev)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8192, 8192), torch.nn.GELU(), torch.nn.Linear(8192, 8192)).to(dev)
    net = model if args.compute_only else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[gpu], bucket_cap_mb=64)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    times = []
    for step in range(args.warmup + args.steps):
        torch.manual_seed(1000 * rank + step)
        x = torch.randn(256, 8192, device=dev)
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = net(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    replicas = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(replicas, flat)
    equal = all(torch.equal(replicas[0], r) for r in replicas)
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        print(f"DDP {args.label}: {statistics.median(times):.1f} ms/step (min {min(times):.1f}, "
              f"{params / 1e6:.0f} M params, {world} ranks), replicas "
              f"{'equal' if equal or args.compute_only else 'DIFFER'}", flush=True)
    dist.destroy_process_group()
    return 0 if (equal or args.compute_only) else 1


if __name__ == "__main__":
    sys.exit(main())
