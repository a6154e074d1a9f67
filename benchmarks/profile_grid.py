"""Where does ``GridAttack`` spend its time beyond the model's forward pass?

    python benchmarks/profile_grid.py [--data-dir DIR] [--n-images N] [--batch-size B]
                                      [--spec grid:3] [--early-exit] [--untrained]

Three views of one attack run on real CIFAR-10 test images with the cached
trained ``SmallCNN(width=32)`` (``_common.py``):

1. a wall-time split: model forward (a timing wrapper around the model),
   ``threat.apply`` (the shift: pad + gather, through a ``ThreatModel``
   subclass that times it), and the rest (indexing, margins, bookkeeping,
   re-verification overhead, Python); compared with plain inference of the
   same number of images at the same batch size;
2. the top operators of ``torch.profiler`` by self CPU time;
3. the top Python functions of ``cProfile`` by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from shiftattack.attacks import GridAttack  # noqa: E402
from shiftattack.data import load_dataset  # noqa: E402
from shiftattack.models import SmallCNN  # noqa: E402
from shiftattack.shifts.threats import ThreatModel, parse_shifts  # noqa: E402

CLOCK = {"forward": 0.0, "apply": 0.0, "forward_images": 0, "sizes": []}


class TimedModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        t0 = time.perf_counter()
        out = self.model(x)
        CLOCK["forward"] += time.perf_counter() - t0
        CLOCK["forward_images"] += x.shape[0]
        CLOCK["sizes"].append(int(x.shape[0]))
        return out


@dataclasses.dataclass(frozen=True)
class TimedThreat(ThreatModel):
    def apply(self, x, params):
        t0 = time.perf_counter()
        out = super().apply(x, params)
        CLOCK["apply"] += time.perf_counter() - t0
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    C.add_data_dir_argument(p)
    p.add_argument("--n-images", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--spec", default="grid:3")
    p.add_argument("--early-exit", action="store_true", help="default: every pair evaluated")
    p.add_argument("--untrained", action="store_true")
    p.add_argument("--top", type=int, default=18)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the batch-size replay")
    args = p.parse_args(argv)

    if args.untrained:
        torch.manual_seed(0)
        model = SmallCNN(width=32).eval()
    else:
        model = C.trained_cifar_cnn(args.data_dir)
    ds = load_dataset(C.cifar_spec(args.data_dir, "test"), limit=args.n_images, progress=False)
    x, y = ds.float_images(), ds.labels
    b = args.batch_size
    threat = TimedThreat(parse_shifts(args.spec), mode="zero")
    atk = GridAttack(threat, batch_size=b, early_exit=args.early_exit)
    timed = TimedModel(model).eval()
    atk(timed, x[:64], y[:64], device="cpu")  # warm-up

    # 1. wall-time split
    CLOCK.update(forward=0.0, apply=0.0, forward_images=0, sizes=[])
    t0 = time.perf_counter()
    res = atk(timed, x, y, device="cpu")
    wall = time.perf_counter() - t0
    pairs = int(res.n_evaluated.sum())
    fwd, app, imgs = CLOCK["forward"], CLOCK["apply"], CLOCK["forward_images"]
    xp = x.repeat((imgs + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:imgs]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, imgs, b):
            model(xp[s : s + b])
    plain = time.perf_counter() - t0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {C.cpu_model()}")
    print(f"GridAttack {args.spec} zero, batch {b}, early_exit={args.early_exit}, {x.shape[0]} images, "
          f"clean acc {res.clean_accuracy:.4f}, worst-case acc {res.worst_case_accuracy:.4f}")
    print(f"  wall {wall:.3f} s for {pairs} counted pairs ({pairs / wall:.0f} pairs/s); "
          f"model saw {imgs} images ({imgs - pairs} beyond n_evaluated: label check, confirmations, "
          f"re-verification)")
    print(f"  model forward        {fwd:8.3f} s  {100 * fwd / wall:5.1f} %")
    print(f"  threat.apply (shift) {app:8.3f} s  {100 * app / wall:5.1f} %")
    print(f"  everything else      {wall - fwd - app:8.3f} s  {100 * (wall - fwd - app) / wall:5.1f} %")
    print(f"  plain inference of the same {imgs} images at batch {b}: {plain:.3f} s "
          f"({imgs / plain:.0f} images/s); attack wall / plain = {wall / plain:.3f} (not interleaved)")

    # 1b. the attack's own sequence of batch sizes replayed, against full batches, round-robin
    sizes = CLOCK["sizes"]
    fill = sum(sizes) / len(sizes) / b
    print(f"  model calls {len(sizes)}, distinct batch sizes {len(set(sizes))}, mean fill {fill:.2f} of B, "
          f"calls below B/2: {sum(1 for v in sizes if v < b / 2)}")

    def replay():
        with torch.inference_mode():
            s = 0
            for v in sizes:
                model(xp[s : s + v])
                s += v

    def full():
        with torch.inference_mode():
            for s in range(0, imgs, b):
                model(xp[s : s + b])

    t = C.time_interleaved({"replay": replay, "full": full}, args.rounds, warmup=0)
    r = C.round_ratio(t["full"]["times"], t["replay"]["times"])
    print(f"  the same {imgs} images through the model in the attack's batch sizes: "
          f"{t['replay']['median']:.3f} s, in full batches of {b}: {t['full']['median']:.3f} s "
          f"(throughput ratio attack-sizes / full = {r:.3f}, median of {args.rounds} interleaved rounds)")

    # 2. torch.profiler operators
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        atk(model, x, y, device="cpu")
    print("\ntorch.profiler, top operators by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))

    # 3. cProfile
    pr = cProfile.Profile()
    pr.enable()
    atk(model, x, y, device="cpu")
    pr.disable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(args.top)
    print("cProfile, top functions by own time:")
    print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
