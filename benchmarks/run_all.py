"""Every ratio the benchmark scripts measure, in one table, from one run.

    python benchmarks/run_all.py                    # quick sizes: about 9 min on 2 idle CPU cores
    python benchmarks/run_all.py --full             # the sizes docs/benchmarks.md documents
    python benchmarks/run_all.py --device cuda      # GPU figures where a script takes --device
    python benchmarks/run_all.py --only attack_speed,certify_speed --markdown /tmp/ratios.md
    python benchmarks/run_all.py --untrained        # never train the benchmark model (see below)

Runs each script below as a subprocess (``sys.executable``); each writes its JSON and its
log under ``--out-dir`` (default ``benchmarks/_cache/run_all_<device>/``). Then it reads the
JSONs and prints one table (benchmark | device | what is compared | ours | baseline | ratio |
target | status | note), and writes it to ``--json`` (default
``benchmarks/results/run_all_<device>.json``) and, if asked, ``--markdown``. Every number
comes from a script's JSON; ``profile_grid.py`` writes none, so its printed figures are parsed.
A ratio is the script's own (the median of per-round ratios where it interleaves rounds),
so it can differ a little from ours / baseline.

Scripts: attack_speed, certify_speed (the ``exact`` part only: ``bound`` and ``smooth`` give
fractions, not speed ratios, and take half an hour), corruption_speed (skipped when
``imagecorruptions`` is not installed), search_order, attack_strength, models, profile_grid,
schedule_speed (the grid attack's member schedule alone, old linear scan against the heap).
Not run: bound_tightness.py and corruption_parity.py (no speed ratios), ``*_tables.py``.
Only attack_speed and corruption_speed take ``--device``; the device column says where each
row ran.

The model-based scripts use the trained ``SmallCNN(width=32)`` cached by ``_common.py``. If
``benchmarks/_cache/`` has no weights it is trained first, once (6 epochs, about 17 min on 2
shared CPU cores, not counted in the 9 min). ``--untrained`` uses a randomly initialised
model instead (attack_speed, certify_speed, profile_grid) and skips search_order and
attack_strength, which need the trained one; the title line says which model was used.

A script that fails gives a "failed: reason" row; the others still run, and the exit status
is 1. A ratio that misses its target is marked in the status column, not counted as a failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

#: script -> (arguments with --quick (the default), arguments with --full)
SIZES = {
    "attack_speed": (["--n-images", "300"], []),
    "certify_speed": (["--n-exact", "300", "--skip", "bound,smooth"], ["--skip", "bound,smooth"]),
    "corruption_speed": (["--n-images", "8", "--repeats", "1"], []),
    "search_order": (["--n-images", "500"], []),
    "attack_strength": (["--n-images", "200"], []),
    "models": (["--quick", "--names", "cifar_convnet*"], []),
    "profile_grid": (["--n-images", "300"], []),
    "schedule_speed": (["--sets", "grid:16:0.125", "--old-calls", "500"], []),
}
SCRIPTS = list(SIZES)
USES_MODEL = {"attack_speed", "certify_speed", "search_order", "attack_strength", "profile_grid"}
NEEDS_TRAINED = {"search_order", "attack_strength"}  # no --untrained option
TAKES_DEVICE = {"attack_speed", "corruption_speed"}
NO_DATA_DIR = {"models", "schedule_speed"}
COLUMNS = ["benchmark", "device", "what is compared", "ours", "baseline", "ratio", "target", "status", "note"]


# ----------------------------------------------------------------------------- rows


def row(what, ours, baseline, ratio, *, unit="x", at_least=None, within=None, ref=None, note=""):
    """One table row; ``at_least`` / ``within=(centre, tolerance)`` are targets, ``ref`` a reference."""
    target, status = None, ""
    if at_least is not None:
        target = f">= {at_least:g}{'' if unit == 'x' else ' ' + unit}"
        status = "ok" if ratio >= at_least else "BELOW TARGET"
    elif within is not None:
        target = f"{within[0]:g} +- {within[1]:g}"
        status = "ok" if abs(ratio - within[0]) <= within[1] else "OUTSIDE TARGET"
    elif ref is not None:
        target = f"paper {ref:.1f}"
    return {"what": what, "ours": ours, "baseline": baseline, "ratio": ratio, "unit": unit,
            "target": target, "status": status, "note": note}


def num(v, unit=""):
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{s} {unit}".strip()


def pct(v):
    return f"{100 * v:.2f}%"


def mib(b):
    return f"{C.mib(b):.1f} MiB"


def attack_speed_rows(doc):
    t, b = doc["targets"], doc["best_batch_size"]
    rows = []
    for g in doc["grid"]:
        how = "early exit" if g["early_exit"] else "every pair"
        rows.append(row(f"grid:3 attack pairs/s / plain inference img/s, B={g['batch_size']}, {how}, "
                        f"{doc['n_images']} images",
                        num(g["pairs_per_s"], "pairs/s"), num(g["plain_same_rounds_images_per_s"], "img/s"),
                        g["ratio_vs_plain_same_rounds"],
                        at_least=t["grid_vs_plain"] if g["batch_size"] == b else None,
                        note="" if g["batch_size"] == b else "target applies at the best plain B only"))
    fb = doc.get("foolbox")
    if fb:
        for key, how in (("ee", "early_exit"), ("full", "every_pair")):
            what = f"foolbox SpatialAttack time / grid:3 attack time ({how.replace('_', ' ')}), B={b}"
            rows.append(row(what,
                            num(fb[key]["seconds"], "s"), num(fb["raw"]["seconds"], "s"),
                            fb[f"ratio_foolbox_over_ours_{how}"], at_least=t["foolbox_over_ours"]))
        rows.append(row(f"images through the model: foolbox / grid:3 attack (early exit), B={b}",
                        num(fb["ee"]["model_images"]), num(fb["raw"]["model_images"]),
                        fb["raw"]["model_images"] / fb["ee"]["model_images"]))
        rows.append(row("fooling rate of clean-correct images: grid:3 attack - foolbox",
                        pct(fb["ee"]["fooling_rate"]), pct(fb["raw"]["fooling_rate"]),
                        100 * (fb["ee"]["fooling_rate"] - fb["raw"]["fooling_rate"]), unit="pts", at_least=0,
                        note=f"adapter == raw foolbox, image by image: {fb['adapter_equals_raw']}"))
    mem = doc.get("memory", {})
    for mode, r in mem.get("ratio_grid10_over_grid3", {}).items():
        rows.append(row(f"peak memory ({mode}): grid:10 (441 shifts) / grid:3 (49 shifts)",
                        mib(mem["grid:10"][mode]["peak_bytes"]), mib(mem["grid:3"][mode]["peak_bytes"]), r,
                        within=(1, t["memory_ratio_within"])))
    return rows


def certify_speed_rows(doc):
    e = doc["exact"]
    return [row(f"certify_exact grid:3 pairs/s / plain inference img/s, B={e['batch_size']}, "
                f"{e['n_images']} images", num(e["certify_pairs_per_s"], "pairs/s"),
                num(e["plain_images_per_s"], "img/s"), e["ratio"], at_least=e["target"],
                note=f"certified {pct(e['certified_accuracy'])} = attack "
                     f"{pct(e['attack_worst_case_accuracy'])}")]


def script_constant(script, name):
    """A module-level constant of a benchmark script, read without importing it."""
    text = (C.BENCH_DIR / f"{script}.py").read_text()
    return float(re.search(rf"^{name} = ([\d.]+)", text, re.M).group(1))


def corruption_speed_rows(doc):
    target, n, rows = script_constant("corruption_speed", "TARGET"), doc["n_images"], []
    for size, blk in doc["sizes"].items():
        each = {k: r["ratio"] for k, r in blk["corruptions"].items() if r["ratio"]}
        lo, hi = min(each, key=each.get), max(each, key=each.get)
        crashed = [k for k, r in blk["corruptions"].items() if r["theirs_error"]]
        rows.append(row(f"corruptions {size}x{size} px, {blk['n_both']} kinds x {len(doc['severities'])} "
                        f"severities, {n} images: imagecorruptions time / ours",
                        num(1000 * blk["ours_total_s"] / n, "ms/img"),
                        num(1000 * blk["theirs_total_s"] / n, "ms/img"),
                        blk["overall_ratio"], at_least=target,
                        note=f"per kind {each[lo]:.2f}x ({lo}) to {each[hi]:.1f}x ({hi})"
                             + (f"; imagecorruptions crashes on {', '.join(crashed)}" if crashed else "")))
    return rows


def search_order_rows(doc):
    by = {(r["shifts"], r["order"]): r for r in doc["rows"]}
    rows = []
    for (spec, order), r in by.items():
        base = by[(spec, "radius")]
        if order == "radius":
            continue
        same = r["worst_case_accuracy"] == base["worst_case_accuracy"]
        note = "same worst-case acc" if same else "WORST-CASE ACC DIFFERS"
        rows.append(row(f"{spec} forward passes: {order} / radius order, {doc['n_images']} images",
                        num(r["forward_passes"]), num(base["forward_passes"]),
                        r["forward_passes"] / base["forward_passes"], note=note))
        rows.append(row(f"{spec} wall time: {order} / radius order (not interleaved)",
                        num(r["seconds"], "s"), num(base["seconds"], "s"), r["seconds"] / base["seconds"]))
    return rows


def schedule_speed_rows(doc):
    return [row(f"{r['shifts']} ({r['members']:,} members, order {r['order']}) pure scheduling: "
                "old linear scan / heap", num(r["old_seconds"], "s"), num(r["new_seconds"], "s"),
                r["ratio_old_over_new"],
                note=(f"old rule timed on {r['old_calls_timed']} calls, scaled to the set"
                      if r["old_extrapolated"] else "both measured over the whole set"))
            for r in doc["rows"]]


def attack_strength_rows(doc):
    rows = []
    for family in ("grid:3", "engstrom"):
        members = [r for r in doc["rows"] if r["attack"].startswith(family)]
        base = next(r for r in members if r["method"] == "grid")
        for r in members:
            if r is not base:
                acc, base_acc = r["worst_case_accuracy"], base["worst_case_accuracy"]
                rows.append(row(f"worst-case acc: {r['attack']} - {base['attack']}, {doc['n_images']} images",
                                pct(acc), pct(base_acc), 100 * (acc - base_acc), unit="pts",
                                note=f"passes/img {r['passes_per_image']:.1f} vs "
                                     f"{base['passes_per_image']:.1f}"))
    return rows


def models_rows(doc):
    rows, tp = [], doc.get("throughput", [])
    for r in tp:
        if "vs_baseline" not in r:
            continue
        bases = [b for b in tp if b["size"] == r["size"] and "vs_baseline" not in b
                 and r["model"].startswith(b["model"] + "_")]
        base = max(bases, key=lambda b: len(b["model"]))
        what = f"inference img/s, {r['size']} px, batch {r['batch']}: {r['model']} / {base['model']}"
        rows.append(row(what, num(r["images_per_s"], "img/s"), num(base["images_per_s"], "img/s"),
                        r["vs_baseline"]))
    train = doc.get("training", [])
    for r in train[1:]:
        rows.append(row(f"training time per epoch ({r['precision']}): {r['model']} / {train[0]['model']}",
                        num(r["seconds_per_epoch"], "s"), num(train[0]["seconds_per_epoch"], "s"),
                        r["vs_baseline"]))
    for label, f in doc.get("first_layer", {}).items():
        paper = f.get("paper") or {}
        for kind in ("blurpool", "cmod"):
            for i, what in enumerate(("multiply-adds", "memory")):
                key = "macs" if i == 0 else "memory"
                rows.append(row(f"first layer {label} ({f['input_size']} px), {what} per Gabor channel: "
                                f"{kind} / RMax", num(f[kind][key]), num(f["rmax"][key]),
                                f["ratios"][kind][i], ref=paper[kind][i] if kind in paper else None))
            if f.get("seconds"):
                rows.append(row(f"first layer {label} ({f['input_size']} px), wall time: {kind} / RMax",
                                num(f["seconds"][kind], "s"), num(f["seconds"]["rmax"], "s"),
                                f["seconds"][kind] / f["seconds"]["rmax"]))
    return rows


PROFILE = {  # what profile_grid.py prints -> figures
    "wall": r"wall ([\d.]+) s for (\d+) counted pairs",
    "forward": r"model forward\s+([\d.]+) s",
    "plain": r"plain inference of the same (\d+) images at batch (\d+): ([\d.]+) s",
    "over_plain": r"attack wall / plain = ([\d.]+)",
    "sizes": r"batch sizes: ([\d.]+) s, in full batches of \d+: ([\d.]+) s "
             r"\(throughput ratio attack-sizes / full = ([\d.]+)",
}


def parse_profile(text):
    """The figures profile_grid.py prints (it writes no JSON)."""
    m = {}
    for key, pattern in PROFILE.items():
        found = re.search(pattern, text)
        if not found:
            raise ValueError(f"profile_grid output has no {pattern!r}")
        m[key] = [float(v) for v in found.groups()]
    head = re.search(r"GridAttack (\S+) zero, batch (\d+), early_exit=(\w+), (\d+) images", text)
    return {"spec": head[1], "batch_size": int(head[2]), "early_exit": head[3] == "True",
            "n_images": int(head[4]), "wall_s": m["wall"][0], "pairs": int(m["wall"][1]),
            "forward_s": m["forward"][0], "model_images": int(m["plain"][0]), "plain_s": m["plain"][2],
            "attack_over_plain": m["over_plain"][0],
            "attack_sizes_s": m["sizes"][0], "full_batches_s": m["sizes"][1],
            "attack_sizes_over_full": m["sizes"][2]}


def profile_grid_rows(doc):
    how = f"{doc['spec']}, B={doc['batch_size']}, {'early exit' if doc['early_exit'] else 'every pair'}"
    return [
        row(f"grid attack wall time / plain inference of the same {doc['model_images']} images ({how}; "
            "not interleaved)", num(doc["wall_s"], "s"), num(doc["plain_s"], "s"), doc["attack_over_plain"]),
        row(f"model throughput at the attack's batch sizes / at full batches ({how})",
            num(doc["attack_sizes_s"], "s"), num(doc["full_batches_s"], "s"), doc["attack_sizes_over_full"]),
        row(f"model forward time / grid attack wall time ({how})", num(doc["forward_s"], "s"),
            num(doc["wall_s"], "s"), doc["forward_s"] / doc["wall_s"]),
    ]


ROWS = {name: globals()[f"{name}_rows"] for name in SCRIPTS}


def build_rows(name, doc, untrained=False):
    """The table rows of one script's JSON, each with its benchmark, device and status."""
    device = doc.get("environment", {}).get("device", "cpu")
    rows = ROWS[name](doc)
    for r in rows:
        r.update(benchmark=name, device=device)
        if untrained and name in USES_MODEL:
            r["note"] = "; ".join(filter(None, ["UNTRAINED model", r["note"]]))
    return rows


def status_row(name, status, device=""):
    return {"benchmark": name, "device": device, "what": "", "ours": "", "baseline": "", "ratio": None,
            "unit": "x", "target": None, "note": "", "status": status}


# ----------------------------------------------------------------------------- output


def cells(r):
    if r["ratio"] is None:
        ratio = ""
    else:
        ratio = f"{r['ratio']:.3f}x" if r["unit"] == "x" else f"{r['ratio']:+.2f} pts"
    return [r["benchmark"], r["device"], r["what"], r["ours"], r["baseline"], ratio, r["target"] or "",
            r["status"], r["note"]]


def text_table(rows):
    table = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(c[i]) for c in table) for i in range(len(COLUMNS))]
    right = {3, 4, 5}  # ours, baseline, ratio

    def line(c):
        cells_ = (c[i].rjust(w) if i in right else c[i].ljust(w) for i, w in enumerate(widths))
        return "  ".join(cells_).rstrip()

    lines = [line(c) for c in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows, title):
    out = [title, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


def title_line(doc):
    e = doc["environment"]
    gpu = f" ({e['gpu']})" if e.get("gpu") else ""
    return (f"run_all ({doc['mode']}) | torch {e['torch']} | device {e['device']}{gpu} | "
            f"threads {e['threads']} | cpu {e['cpu']} ({e['cpu_count']} logical) | model: {doc['model']}")


# ----------------------------------------------------------------------------- running


def run_script(script, argv, log_path):
    """Run ``benchmarks/<script>.py argv`` with this Python, output to ``log_path``; the exit status."""
    with open(log_path, "w") as log:
        return subprocess.run([sys.executable, str(C.BENCH_DIR / f"{script}.py"), *argv], cwd=C.REPO_ROOT,
                              stdout=log, stderr=subprocess.STDOUT).returncode


def last_line(path):
    lines = [s.strip() for s in re.split(r"[\r\n]", Path(path).read_text(errors="replace")) if s.strip()]
    return lines[-1][:160] if lines else "no output"


def command(name, args, out_dir, weights):
    """The arguments of one script in this run (``--json`` last but for profile_grid)."""
    argv = list(SIZES[name][1 if args.full else 0])
    if name == "certify_speed":
        argv += ["--model", "small_cnn", "--weights", str(weights)]
    if name in TAKES_DEVICE:
        argv += ["--device", args.device]
    if args.data_dir and name not in NO_DATA_DIR:
        argv += ["--data-dir", str(args.data_dir)]
    if args.untrained and name in {"attack_speed", "profile_grid"}:
        argv.append("--untrained")
    if name == "attack_speed" and importlib.util.find_spec("foolbox") is None:
        argv.append("--skip-foolbox")
    if name != "profile_grid":
        argv += ["--json", str(out_dir / f"{name}.json")]
    return argv


def prepare_model(args, out_dir, log):
    """(weights, description, error): the cached trained model (trained if missing) or an untrained one."""
    weights = C.DEFAULT_CACHE_DIR / C.WEIGHTS_NAME
    if args.untrained:
        import torch

        from shiftattack.models import SmallCNN

        torch.manual_seed(0)
        weights = out_dir / "untrained_small_cnn_w32.pt"
        torch.save(SmallCNN(num_classes=10, width=32).state_dict(), weights)
        return weights, "SmallCNN(width=32) UNTRAINED (random weights, seed 0)", None
    trained_now = ""
    if not weights.exists():
        log(f"training the benchmark model once (benchmarks/_common.py; about 17 min on 2 CPU cores), "
            f"log {out_dir / '_common.log'}")
        t0 = time.perf_counter()
        argv = ["--data-dir", str(args.data_dir)] if args.data_dir else []
        if run_script("_common", argv, out_dir / "_common.log") != 0 or not weights.exists():
            return None, None, f"training failed: {last_line(out_dir / '_common.log')}"
        trained_now = f", trained in this run in {time.perf_counter() - t0:.0f} s"
    info = C.model_info() or {}
    acc = info.get("test_accuracy", float("nan"))
    return weights, (f"SmallCNN(width=32) trained by _common.py, test acc {acc:.4f}, "
                     f"{info.get('epochs', '?')} epochs{trained_now}"), None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    C.add_data_dir_argument(p)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (the default)")
    size.add_argument("--full", action="store_true", help="the documented sizes (an hour or more on 2 cores)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    p.add_argument("--only", default=",".join(SCRIPTS), help="comma list of scripts (default: all)")
    p.add_argument("--untrained", action="store_true", help="random-weight model; never trains (see above)")
    p.add_argument("--json", type=Path, help="the table as JSON (default results/run_all_DEVICE.json)")
    p.add_argument("--markdown", type=Path, help="the table as Markdown, for the docs")
    p.add_argument("--out-dir", type=Path, help="the scripts' JSONs and logs (default _cache/run_all_DEVICE)")
    args = p.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    unknown = set(args.only) - set(SCRIPTS)
    if unknown:
        p.error(f"unknown scripts {sorted(unknown)}; choose from {','.join(SCRIPTS)}")
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine")
    return args


def main(argv=None):
    args = parse_args(argv)
    import torch

    t_start, env = time.perf_counter(), C.environment(torch.device(args.device))
    out_dir = args.out_dir or C.DEFAULT_CACHE_DIR / f"run_all_{args.device}"
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(s):
        print(s, flush=True)

    weights, model, error = None, "not used", None
    if USES_MODEL & set(args.only):
        weights, model, error = prepare_model(args, out_dir, log)
        model = model or f"unavailable ({error})"
    rows, scripts, failed = [], {}, bool(error)
    for i, name in enumerate(args.only, 1):
        skip = None
        if name in USES_MODEL and error:
            skip = f"failed: benchmark model unavailable ({error})"
        elif args.untrained and name in NEEDS_TRAINED:
            skip = "skipped: needs the trained model (no --untrained option)"
        elif name == "corruption_speed" and importlib.util.find_spec("imagecorruptions") is None:
            skip = "skipped: imagecorruptions is not installed (pip install imagecorruptions 'setuptools<81')"
        if skip:
            rows.append(status_row(name, skip))
            log(f"[{i}/{len(args.only)}] {name}: {skip}")
            continue
        script_argv = command(name, args, out_dir, weights)
        log_path, json_path = out_dir / f"{name}.log", out_dir / f"{name}.json"
        log(f"[{i}/{len(args.only)}] {name}: {' '.join(['python', f'benchmarks/{name}.py', *script_argv])}")
        t0 = time.perf_counter()
        json_path.unlink(missing_ok=True)
        rc = run_script(name, script_argv, log_path)
        seconds = time.perf_counter() - t0
        scripts[name] = {"argv": script_argv, "returncode": rc, "seconds": round(seconds, 1),
                         "log": str(log_path), "json": str(json_path)}
        try:
            if rc != 0:
                raise RuntimeError(f"exit {rc}: {last_line(log_path)}")
            if name == "profile_grid":
                C.save_figures(json_path, {"environment": C.environment(torch.device("cpu")),
                                           **parse_profile(log_path.read_text())})
            new = build_rows(name, json.loads(json_path.read_text()), args.untrained)
            log(f"    done in {seconds:.0f} s, {len(new)} rows (log {log_path})")
        except Exception as exc:  # one script's failure must not stop the others
            new, failed = [status_row(name, f"failed: {type(exc).__name__}: {exc}"[:300])], True
            log(f"    FAILED after {seconds:.0f} s: {new[0]['status']} (log {log_path})")
        rows += new

    env["load_average_end"] = list(os.getloadavg())
    cmd = ["python", "benchmarks/run_all.py", *(sys.argv[1:] if argv is None else argv)]
    doc = {"benchmark": "run_all", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": shlex.join(cmd),
           "mode": "full" if args.full else "quick", "environment": env,
           "model": model, "scripts": scripts, "rows": rows,
           "total_seconds": round(time.perf_counter() - t_start, 1)}
    title = title_line(doc)
    loads = [" ".join(f"{v:.2f}" for v in env.get(k, [])) for k in ("load_average", "load_average_end")]
    print(f"\n{title}\n{text_table(rows)}\ntotal {doc['total_seconds']:.0f} s; load average at start "
          f"{loads[0]}, at end {loads[1]} ({os.cpu_count()} cores: a higher load means noisy figures)")
    C.save_figures(args.json or C.BENCH_DIR / "results" / f"run_all_{args.device}.json", doc)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(rows, title))
        print(f"wrote {args.markdown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
