"""Start-up time of ``shiftattack --help``, against ``python -c "import torch"`` in the same run.

    python benchmarks/cli_startup.py                        # this checkout
    python benchmarks/cli_startup.py --tree /tmp/before     # and another checkout, interleaved

Each round runs every command once, in turn (interleaved, so drifting load hits all
alike), in a fresh interpreter: ``--help`` of the command line from each source tree (the
package imported from that tree, not from the installed copy), and the baseline. Prints
the median wall time of each and its ratio to the baseline (below 1: ``--help`` does not
pay for importing torch) and to the first tree; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

HELP = "import sys; sys.path.insert(0, {tree!r}); from shiftattack.cli import main; main(['--help'])"


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], help="another source tree to time (repeatable)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", type=Path, default=C.BENCH_DIR / "results" / "cli_startup.json")
    args = p.parse_args(argv)
    trees = [str(C.REPO_ROOT)] + [str(Path(t).resolve()) for t in args.tree]
    commands = {"import torch": [sys.executable, "-c", "import torch"]}
    for tree in trees:
        commands[f"--help from {tree}"] = [sys.executable, "-c", HELP.format(tree=tree)]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            times[name].append(seconds(cmd))
    median = {name: statistics.median(t) for name, t in times.items()}
    base, first = median["import torch"], median[f"--help from {trees[0]}"]
    rows = []
    print(f"{'command':60s} {'median s':>9s} {'/ import torch':>15s} {'/ this tree':>12s}")
    for name, m in median.items():
        rows.append({"command": name, "median_seconds": m, "all_seconds": times[name],
                     "ratio_to_import_torch": m / base, "ratio_to_this_tree": m / first})
        print(f"{name[:60]:60s} {m:9.2f} {m / base:15.2f} {m / first:12.2f}")
    doc = {"benchmark": "cli_startup", "repeats": args.repeats, "rows": rows,
           "environment": C.environment(C.torch.device("cpu"))}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
