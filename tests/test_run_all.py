"""``benchmarks/run_all.py``: the table built from the JSON each benchmark script writes.

Fake JSONs in each script's format go in; the rows, ratios, targets and statuses come out.
One test runs ``main`` with the subprocess replaced, for the failure handling and the files
it writes. No benchmark runs here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def R():
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = module
    spec.loader.exec_module(module)
    return module


ENV = {"environment": {"device": "cpu", "torch": "2.x", "threads": 2}}


def attack_speed_doc():
    grid = [{"batch_size": b, "early_exit": ee, "pairs_per_s": 900.0 * r,
             "plain_same_rounds_images_per_s": 1000.0, "ratio_vs_plain_same_rounds": r}
            for b, ee, r in [(64, True, 0.95), (64, False, 0.85), (256, True, 0.5), (256, False, 0.4)]]
    foolbox = {"ratio_foolbox_over_ours_early_exit": 3.4, "ratio_foolbox_over_ours_every_pair": 1.35,
               "adapter_equals_raw": True,
               "raw": {"seconds": 15.0, "model_images": 51000, "fooling_rate": 0.6458},
               "ee": {"seconds": 4.4, "model_images": 15373, "fooling_rate": 0.6703},
               "full": {"seconds": 11.1, "model_images": 37482, "fooling_rate": 0.6703}}
    memory = {"grid:3": {"live": {"peak_bytes": 100 * 2**20}, "rss": {"peak_bytes": 100 * 2**20}},
              "grid:10": {"live": {"peak_bytes": 102 * 2**20}, "rss": {"peak_bytes": 125 * 2**20}},
              "ratio_grid10_over_grid3": {"live": 1.02, "rss": 1.25}}
    targets = {"grid_vs_plain": 0.9, "foolbox_over_ours": 3.0, "memory_ratio_within": 0.1}
    return {**ENV, "n_images": 300, "targets": targets, "best_batch_size": 64, "grid": grid,
            "foolbox": foolbox, "memory": memory}


def test_attack_speed_rows(R):
    rows = R.build_rows("attack_speed", attack_speed_doc())
    assert [r["ratio"] for r in rows[:4]] == [0.95, 0.85, 0.5, 0.4]
    # the >= 0.9 target applies at the best plain batch size only
    assert [r["status"] for r in rows[:4]] == ["ok", "BELOW TARGET", "", ""]
    assert [r["target"] for r in rows[:4]] == [">= 0.9", ">= 0.9", None, None]
    fb_ee, fb_full, images, fooling = rows[4:8]
    assert (fb_ee["ratio"], fb_ee["status"], fb_ee["ours"], fb_ee["baseline"]) == (3.4, "ok", "4.4 s", "15 s")
    assert (fb_full["ratio"], fb_full["status"]) == (1.35, "BELOW TARGET")
    assert images["ratio"] == pytest.approx(51000 / 15373)
    assert fooling["unit"] == "pts" and fooling["ratio"] == pytest.approx(2.45)
    assert fooling["status"] == "ok" and "adapter == raw foolbox, image by image: True" in fooling["note"]
    live, rss = rows[8:]
    assert (live["ratio"], live["status"], live["target"]) == (1.02, "ok", "1 +- 0.1")
    assert (rss["ratio"], rss["status"], rss["ours"]) == (1.25, "OUTSIDE TARGET", "125.0 MiB")
    assert all(r["benchmark"] == "attack_speed" and r["device"] == "cpu" for r in rows)
    untrained = R.build_rows("attack_speed", attack_speed_doc(), untrained=True)
    assert all(r["note"].startswith("UNTRAINED model") for r in untrained)


def test_attack_speed_without_foolbox_or_memory(R):
    doc = attack_speed_doc()
    del doc["foolbox"]
    doc["memory"] = {}
    assert len(R.build_rows("attack_speed", doc)) == 4


def test_certify_rows(R):
    doc = {**ENV, "exact": {"n_images": 300, "batch_size": 256, "certify_pairs_per_s": 2416.0,
                            "plain_images_per_s": 3007.0, "ratio": 0.88, "target": 0.9,
                            "certified_accuracy": 0.5, "attack_worst_case_accuracy": 0.5}}
    (r,) = R.build_rows("certify_speed", doc)
    assert (r["ratio"], r["target"], r["status"]) == (0.88, ">= 0.9", "BELOW TARGET")
    assert (r["ours"], r["baseline"]) == ("2,416 pairs/s", "3,007 img/s")
    assert "certified 50.00% = attack 50.00%" in r["note"]


def test_corruption_rows(R):
    def kinds(scale):
        return {"a": {"ours_s": 1.0, "theirs_s": 2.0 * scale, "theirs_error": None, "ratio": 2.0 * scale},
                "b": {"ours_s": 1.0, "theirs_s": 30.0 * scale, "theirs_error": None, "ratio": 30.0 * scale},
                "fog": {"ours_s": 1.0, "theirs_s": None, "theirs_error": "AttributeError: x", "ratio": None}}

    doc = {**ENV, "n_images": 4, "severities": [1, 2, 3, 4, 5],
           "sizes": {s: {"corruptions": kinds(k), "overall_ratio": 16.0 * k, "ours_total_s": 2.0,
                         "theirs_total_s": 32.0 * k, "n_both": 2} for s, k in (("224", 1), ("32", 2))}}
    r224, r32 = R.build_rows("corruption_speed", doc)
    target = R.script_constant("corruption_speed", "TARGET")  # read from the script, not typed in
    assert r224["target"] == f">= {target:g}"
    assert (r224["ratio"], r224["status"]) == (16.0, "BELOW TARGET" if target > 16 else "ok")
    assert (r32["ratio"], r32["status"]) == (32.0, "ok" if target <= 32 else "BELOW TARGET")
    assert (r224["ours"], r224["baseline"]) == ("500 ms/img", "8,000 ms/img")
    assert "224x224 px, 2 kinds x 5 severities, 4 images" in r224["what"]
    assert "per kind 2.00x (a) to 30.0x (b)" in r224["note"] and "crashes on fog" in r224["note"]


def test_search_order_rows(R):
    rows = [{"shifts": s, "order": o, "worst_case_accuracy": acc, "forward_passes": p, "seconds": t}
            for s, o, acc, p, t in [("grid:3", "radius", 0.24, 1000, 10.0),
                                    ("grid:3", "adaptive", 0.24, 800, 7.5),
                                    ("grid:3", "far_first", 0.23, 500, 5.0)]]
    out = R.build_rows("search_order", {**ENV, "n_images": 100, "rows": rows})
    assert [r["ratio"] for r in out] == [0.8, 0.75, 0.5, 0.5]
    assert out[0]["note"] == "same worst-case acc" and out[2]["note"] == "WORST-CASE ACC DIFFERS"
    assert "adaptive / radius" in out[0]["what"] and "wall time" in out[1]["what"]


def test_attack_strength_rows(R):
    rows = [{"attack": a, "method": m, "worst_case_accuracy": acc, "passes_per_image": 10.0}
            for a, m, acc in [("grid:3 exact", "grid", 0.2), ("grid:3 first-order", "gradient", 0.35),
                              ("engstrom grid 5x5x31", "grid", 0.02), ("engstrom random", "random", 0.15)]]
    out = R.build_rows("attack_strength", {**ENV, "n_images": 100, "rows": rows})
    assert [r["ratio"] for r in out] == [pytest.approx(15.0), pytest.approx(13.0)]
    assert all(r["unit"] == "pts" and r["target"] is None for r in out)
    assert out[0]["ours"] == "35.00%" and out[0]["baseline"] == "20.00%"


def test_models_rows(R):
    tp = [{"model": m, "size": 32, "batch": 64, "images_per_s": v, **({"vs_baseline": r} if r else {})}
          for m, v, r in [("vgg16", 100.0, None), ("vgg16_bn", 80.0, None), ("vgg16_bn_blur2", 40.0, 0.52),
                          ("vgg16_blur2", 60.0, 0.61)]]
    training = [{"model": m, "seconds_per_epoch": t, "precision": "bf16", "vs_baseline": r}
                for m, t, r in [("cifar_convnet", 40.0, 1.0), ("cifar_convnet_cmod", 44.0, 1.1)]]
    layer = {"input_size": 224, "rmax": {"macs": 100, "memory": 10}, "blurpool": {"macs": 400, "memory": 47},
             "cmod": {"macs": 50, "memory": 6}, "ratios": {"blurpool": [4.0, 4.7], "cmod": [0.5, 0.6]},
             "seconds": {"rmax": 0.01, "blurpool": 0.04, "cmod": 0.005},
             "paper": {"blurpool": [4.0, 4.7], "cmod": [0.5, 0.6]}}
    doc = {**ENV, "batch": 64, "throughput": tp, "training": training,
           "first_layer": {"alexnet": layer, "cifar_convnet": {**layer, "paper": None, "seconds": None}}}
    out = R.build_rows("models", doc)
    inference = [r for r in out if r["what"].startswith("inference")]
    # each variant against the longest registered name it extends (vgg16_bn, not vgg16)
    assert [(r["what"].split(": ")[1], r["ratio"]) for r in inference] == [
        ("vgg16_bn_blur2 / vgg16_bn", 0.52), ("vgg16_blur2 / vgg16", 0.61)]
    (train,) = [r for r in out if r["what"].startswith("training")]
    assert (train["ratio"], train["ours"], train["baseline"]) == (1.1, "44 s", "40 s")
    alexnet = [r for r in out if "alexnet" in r["what"]]
    assert [r["ratio"] for r in alexnet] == [4.0, 4.7, pytest.approx(4.0), 0.5, 0.6, pytest.approx(0.5)]
    assert [r["target"] for r in alexnet] == ["paper 4.0", "paper 4.7", None, "paper 0.5", "paper 0.6", None]
    assert len([r for r in out if "cifar_convnet (224 px)" in r["what"]]) == 4  # no paper, no timing


PROFILE_OUTPUT = """torch 2.x, 2 threads, AMD EPYC
GridAttack grid:3 zero, batch 512, early_exit=False, 64 images, clean acc 0.1094, worst-case acc 0.0938
  wall 2.000 s for 400 counted pairs (200 pairs/s); model saw 459 images (59 beyond n_evaluated: ...)
  model forward           1.500 s   75.0 %
  threat.apply (shift)    0.000 s    0.0 %
  everything else         0.500 s   25.0 %
  plain inference of the same 459 images at batch 512: 1.250 s (367 images/s); \
attack wall / plain = 1.600 (not interleaved)
  model calls 4, distinct batch sizes 4, mean fill 0.22 of B, calls below B/2: 3
  the same 459 images through the model in the attack's batch sizes: 1.487 s, \
in full batches of 512: 1.004 s (throughput ratio attack-sizes / full = 0.675, median of 3 interleaved rounds)
"""


def test_profile_grid_parse_and_rows(R):
    doc = R.parse_profile(PROFILE_OUTPUT)
    assert doc["attack_over_plain"] == 1.6 and doc["attack_sizes_over_full"] == 0.675
    assert (doc["batch_size"], doc["early_exit"], doc["model_images"]) == (512, False, 459)
    over_plain, sizes, forward = R.build_rows("profile_grid", {**ENV, **doc})
    assert (over_plain["ratio"], over_plain["ours"], over_plain["baseline"]) == (1.6, "2 s", "1.25 s")
    assert sizes["ratio"] == 0.675 and forward["ratio"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="profile_grid output has no"):
        R.parse_profile("something else")


def test_tables(R):
    rows = R.build_rows("certify_speed", {**ENV, "exact": {
        "n_images": 3, "batch_size": 2, "certify_pairs_per_s": 1.0, "plain_images_per_s": 2.0, "ratio": 0.5,
        "target": 0.9, "certified_accuracy": 0.5, "attack_worst_case_accuracy": 0.5}})
    rows.append(R.status_row("models", "failed: RuntimeError: exit 1: boom | x"))
    text = R.text_table(rows).splitlines()
    assert text[0].split()[:3] == ["benchmark", "device", "what"] and set(text[1]) == {"-", " "}
    assert "0.500x" in text[2] and text[3].rstrip().endswith("failed: RuntimeError: exit 1: boom | x")
    md = R.markdown_table(rows, "title").splitlines()
    assert md[0] == "title" and md[2].startswith("| benchmark | device |") and len(md) == 6
    assert md[5].count(" | ") == len(R.COLUMNS) - 1 and "boom \\| x" in md[5]


def test_commands(R, tmp_path):
    args = R.parse_args(["--device", "cpu", "--data-dir", "/data"])
    argv = R.command("attack_speed", args, tmp_path, "w.pt")
    assert argv[:2] == ["--n-images", "300"] and ["--device", "cpu"] == argv[2:4]
    assert argv[-2:] == ["--json", str(tmp_path / "attack_speed.json")] and "--untrained" not in argv
    assert "--data-dir" not in R.command("models", args, tmp_path, "w.pt")
    assert "--json" not in R.command("profile_grid", args, tmp_path, "w.pt")
    certify = R.command("certify_speed", R.parse_args(["--full", "--device", "cpu"]), tmp_path, "w.pt")
    assert certify[:2] == ["--skip", "bound,smooth"] and "--weights" in certify and "--device" not in certify
    untrained = R.parse_args(["--untrained", "--device", "cpu", "--only", "profile_grid"])
    assert untrained.only == ["profile_grid"]
    assert "--untrained" in R.command("profile_grid", untrained, tmp_path, "w.pt")
    with pytest.raises(SystemExit):
        R.parse_args(["--only", "nonsense"])


def test_main_keeps_going_after_a_failure(R, tmp_path, monkeypatch, capsys):
    certify = {**ENV, "exact": {"n_images": 3, "batch_size": 2, "certify_pairs_per_s": 1.0,
                                "plain_images_per_s": 1.0, "ratio": 1.0, "target": 0.9,
                                "certified_accuracy": 0.5, "attack_worst_case_accuracy": 0.5}}
    calls = []

    def fake_run(script, argv, log_path):
        calls.append(script)
        if script == "models":
            Path(log_path).write_text("Traceback ...\nRuntimeError: boom\n")
            return 1
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(certify))
        Path(log_path).write_text("fine\n")
        return 0

    monkeypatch.setattr(R, "run_script", fake_run)
    out_json, out_md = tmp_path / "t.json", tmp_path / "t.md"
    rc = R.main(["--only", "models,certify_speed,search_order", "--untrained", "--device", "cpu",
                 "--out-dir", str(tmp_path / "out"), "--json", str(out_json), "--markdown", str(out_md)])
    assert rc == 1 and calls == ["models", "certify_speed"]
    doc = json.loads(out_json.read_text())
    assert [r["status"] for r in doc["rows"]] == [
        "failed: RuntimeError: exit 1: RuntimeError: boom", "ok",
        "skipped: needs the trained model (no --untrained option)"]
    assert doc["mode"] == "quick" and "UNTRAINED" in doc["model"]
    assert doc["scripts"]["models"]["returncode"] == 1
    assert "UNTRAINED model" in doc["rows"][1]["note"]
    assert out_md.read_text().startswith("run_all (quick) | torch ")
    printed = capsys.readouterr().out
    assert "failed: RuntimeError: exit 1: RuntimeError: boom" in printed and "model: SmallCNN" in printed


def test_schedule_speed_rows(R):
    doc = {**ENV, "rows": [
        {"shifts": "grid:16:0.125", "order": "radius", "members": 66048, "old_seconds": 40.0,
         "old_calls_timed": 500, "old_extrapolated": True, "new_seconds": 0.8, "ratio_old_over_new": 50.0},
        {"shifts": "grid:2", "order": "adaptive", "members": 24, "old_seconds": 0.002,
         "old_calls_timed": 24, "old_extrapolated": False, "new_seconds": 0.001, "ratio_old_over_new": 2.0}]}
    first, second = R.build_rows("schedule_speed", doc)
    assert (first["ratio"], first["ours"], first["baseline"]) == (50.0, "40 s", "0.8 s")
    assert "66,048 members" in first["what"] and "500 calls" in first["note"]
    assert second["note"] == "both measured over the whole set"
    assert "schedule_speed" in R.SCRIPTS and "schedule_speed" in R.NO_DATA_DIR
