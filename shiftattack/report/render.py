"""The report: a self-contained HTML page (figures embedded) and a Markdown summary with PNG files.

The page opens with the headline (:mod:`.headline`: one row per model and the sentence that
answers which fix helped most, with its interval) and the robustness curve, then every table
and figure, then the papers' published tables, labelled as measured elsewhere. Every number
is read from a results document and formatted; the headline's interval is computed from the
documents' per-image records.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from shiftattack.report import published
from shiftattack.report.collect import Entry
from shiftattack.report.headline import headline
from shiftattack.report.plots import Figure, draw_all
from shiftattack.runtime.results import _atomic_write, write_text

__all__ = ["tables", "write_report"]


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def tables(entries: list[Entry]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` for each kind of result present."""
    out = []
    rows = [
        [
            e.label,
            e.doc["threat"]["spec"],
            e.doc["threat"]["mode"],
            str(e.doc["n_images"]),
            _pct(e.doc["clean_accuracy"]),
            _pct(e.doc["worst_case_accuracy"]),
        ]
        for e in entries
        if e.kind == "attack"
    ]
    if rows:
        out.append(("Shift attacks", ["model", "shifts", "mode", "images", "clean", "worst case"], rows))
    rows = []
    for e in entries:
        if e.kind != "certificate":
            continue
        d = e.doc
        gap = (
            "n/a"
            if d.get("worst_case_accuracy") is None
            else f"{100 * (d['worst_case_accuracy'] - d['certified_accuracy']):.2f} points"
        )
        rows.append(
            [
                e.label,
                d["method"]["name"],
                d["threat"]["spec"],
                d["threat"].get("mode", ""),
                str(d["n_images"]),
                _pct(d["certified_accuracy"]),
                _pct(d.get("worst_case_accuracy")),
                gap,
            ]
        )
    if rows:
        out.append(
            (
                "Certificates",
                ["model", "method", "set", "mode", "images", "certified", "attack's worst case", "gap"],
                rows,
            )
        )
    rows = [
        [
            e.label,
            e.doc["suite"],
            str(e.doc["n_images"]),
            str(len(e.doc["corruptions"])),
            _pct(e.doc["clean_error"]),
            _pct(e.doc.get("mean_error")),
            _pct(e.doc["mce"]),
        ]
        for e in entries
        if e.kind == "corruption"
    ]
    if rows:
        header = ["model", "suite", "images", "corruptions", "clean error", "mean corrupted error", "mCE"]
        out.append(("Corruptions", header, rows))
    rows = [
        [
            e.label,
            e.doc["suite"],
            str(e.doc.get("n_images", "n/a")),
            _pct(e.doc["mfr"]),
            f"{e.doc['mt5d']:.3f}",
        ]
        for e in entries
        if e.kind == "perturbation" and e.doc.get("mfr") is not None
    ]
    if rows:
        out.append(("Perturbations", ["model", "suite", "images", "mFR", "mT5D"], rows))
    stab = [e for e in entries if e.kind == "stability"]
    if stab:
        modes = list(dict.fromkeys(m for e in stab for m in e.doc["consistency"]))
        rows = [
            [e.label, str(e.doc["n_images"]), f"±{e.doc['max_shift']} px"]
            + [
                "n/a" if e.doc["consistency"].get(m) is None else f"{e.doc['consistency'][m]:.2f} %"
                for m in modes
            ]
            + [_flip(e.doc)]
            for e in stab
        ]
        out.append(("Consistency and flip rate",
                    ["model", "images", "shifts", *[f"{m}" for m in modes], "mean flip rate"], rows))
    rows = [
        [
            e.label,
            str(len(e.doc.get("epochs") or [])),
            _pct(e.doc.get("test_accuracy")),
            "n/a" if not e.doc.get("filter_smoothness") else f"{e.doc['filter_smoothness']['mean']:.3f}",
        ]
        for e in entries
        if e.kind == "train"
    ]
    if rows:
        out.append(("Trained models", ["model", "epochs", "test accuracy", "first-layer TV (mean)"], rows))
    return out


def _flip(doc: dict) -> str:
    fr = doc.get("flip_rate")
    return "n/a" if not fr else f"{fr['mean_flip_rate']:.2f} % (d ≤ {fr['max_distance']} px)"


def published_tables(kinds: set[str]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The published figures that compare with the kinds of results present, each titled with its source."""
    out = []
    if kinds & {"stability", "train"}:
        rows = [[model, *(f"{acc:.2f} / {cons:.2f}" for acc, cons in variants.values())]
                for model, variants in published.ZHANG_IMAGENET.items()]
        header = ["model", *next(iter(published.ZHANG_IMAGENET.values()))]
        out.append((f"Published: ImageNet top-1 accuracy / consistency, % ({published.SOURCES['zhang2019']})",
                    header, rows))
        rows = [[v, *(f"{x:.1f}" for x in vals)] for v, vals in published.CMOD_CIFAR10.items()]
        out.append((f"Published: CIFAR-10 ResNet-18 ({published.SOURCES['leterme2024']})",
                    ["model", "one-crop error %", "ten-crop error %", "mean flip rate (standard = 100)"], rows))
    if kinds & {"corruption", "perturbation"}:
        rows = [[m, *(f"{v[k]:.1f} %" if k in v else "n/a"
                      for k in ("imagenet_c_mce", "imagenet_p_mfr", "imagenet_p_mt5d"))]
                for m, v in published.HENDRYCKS.items()]
        out.append((f"Published: ImageNet-C / -P ({published.SOURCES['hendrycks2019']})",
                    ["model", "ImageNet-C mCE", "ImageNet-P mFR", "ImageNet-P mT5D"], rows))
    if kinds & {"attack", "certificate"}:
        rows = [[m, *(f"{v:.1f} %" for v in vals)] for m, vals in published.ENGSTROM.items()]
        out.append((f"Published: spatial attacks, ImageNet ResNet-18 accuracy ({published.SOURCES['engstrom2019']})",
                    ["training", "natural", "random", "worst-of-10", "grid"], rows))
    return out


def _split_tables(entries: list[Entry]):
    """(our tables, the published ones): the page shows ours, then the figures, then the papers'."""
    return tables(entries), published_tables({e.kind for e in entries})


#: the figure shown under the headline
LEAD_FIGURE = "worst_case_vs_radius"


def _data_specs(entries: list[Entry]) -> list[str]:
    """The data specs the entries were measured on, in order (train logs: the training data)."""
    specs = []
    for e in entries:
        data = e.doc.get("data")
        if isinstance(data, dict):
            spec = data.get("spec") or (data.get("train") or {}).get("spec")
            if spec:
                specs.append(str(spec))
    return list(dict.fromkeys(specs))


def published_note(entries: list[Entry]) -> str:
    """Why the papers' tables are beside ours: for reference, not comparable."""
    specs = _data_specs(entries)
    where = ", ".join(specs[:4]) + (", ..." if len(specs) > 4 else "") if specs else "the data named in Sources"
    return ("Not comparable with the results above: these are the papers' numbers, measured on ImageNet (the "
            "CMod table: CIFAR-10 with ResNet-18) with their models, training and protocols; the results above "
            f"were measured on {where} with the models named there. Read them side by side for the direction "
            "of an effect, not as a reproduction.")


def _html(entries: list[Entry], figures: list[Figure], title: str) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}td:not(:first-child){white-space:nowrap}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}"
        "img{max-width:100%}figcaption{color:#444;font-size:90%}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    ours, theirs = _split_tables(entries)
    head = headline(entries)
    lead = [f for f in figures if f.name == LEAD_FIGURE and head is not None]

    def table_html(name, header, rows):
        parts.append(f"<h2>{esc(name)}</h2><table><tr>")
        parts.extend(f"<th>{esc(h)}</th>" for h in header)
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")

    def figure_html(f):
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f'<figure id="{esc(f.name)}"><img alt="{esc(f.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(f.caption)}</figcaption></figure>"
        )

    if head is not None:
        parts.append('<section id="headline">')
        table_html("Headline", head.header, head.rows)
        parts.append(f'<p id="headline-sentence"><strong>{esc(head.sentence)}</strong></p>')
        for f in lead:
            figure_html(f)
        parts.append("</section>")
    for table in ours:
        table_html(*table)
    rest = [f for f in figures if f not in lead]
    if rest:
        parts.append("<h2>Figures</h2>")
    for f in rest:
        figure_html(f)
    if theirs:
        parts.append(f'<h2>Published figures, for reference</h2><p class="not-comparable">'
                     f"{esc(published_note(entries))}</p>")
    for table in theirs:
        table_html(*table)
    sources = "".join(f"<li><code>{esc(str(e.path))}</code> ({e.kind})</li>" for e in entries)
    parts.append(f"<h2>Sources</h2><ul>{sources}</ul>")
    # marks how many figures the browser decoded and where the headline ends on the first screen
    # (checked by the headless-browser tests)
    parts.append(
        "<script>addEventListener('load',()=>{const b=document.body.dataset;b.figuresRendered="
        "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;"
        "const h=document.getElementById('headline-sentence');"
        "if(h){b.headlineBottom=Math.ceil(h.getBoundingClientRect().bottom);b.viewportHeight=innerHeight}})</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(entries: list[Entry], figures: list[Figure], title: str) -> str:
    lines = [f"# {title}", ""]
    ours, theirs = _split_tables(entries)
    head = headline(entries)
    lead = [f for f in figures if f.name == LEAD_FIGURE and head is not None]

    def table_md(name, header, rows):
        lines.extend([f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        lines.append("")

    def figure_md(f):
        lines.extend([f"![{f.caption}](figures/{f.name}.png)", "", f"*{f.caption}*", ""])

    if head is not None:
        table_md("Headline", head.header, head.rows)
        lines.extend([f"**{head.sentence}**", ""])
        for f in lead:
            figure_md(f)
    for table in ours:
        table_md(*table)
    for f in figures:
        if f not in lead:
            figure_md(f)
    if theirs:
        lines.extend(["## Published figures, for reference", "", published_note(entries), ""])
    for table in theirs:
        table_md(*table)
    lines += ["## Sources", ""] + [f"- `{e.path}` ({e.kind})" for e in entries]
    return "\n".join(lines) + "\n"


def write_report(entries: list[Entry], out: str | Path, title: str = "shiftattack report") -> Path:
    """Write ``out/report.html``, ``out/report.md`` and ``out/figures/*.png``; returns the HTML path."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figures = draw_all(entries)
    for f in figures:
        _atomic_write(out / "figures" / f"{f.name}.png", lambda fh, png=f.png: fh.write(png))
    write_text(out / "report.md", _markdown(entries, figures, title))
    return write_text(out / "report.html", _html(entries, figures, title))
