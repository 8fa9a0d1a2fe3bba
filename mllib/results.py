"""The results page (``docs/results.md``), generated from files, never typed by hand.

Sources (sorted by file name, so the output is deterministic):

* model cards ``mllib/checkpoints/*.json``: one trained checkpoint each, with keys such as
  ``algo``, ``ways``, ``shots``, ``profile``, ``device`` (or ``card``), ``train_seconds``,
  ``accuracy``, ``ci95``, ``tasks``, ``bn``, ``command``, ``val_time_to_accuracy`` (written by
  ``python -m mllib publish``); missing keys print as ``-``;
* benchmark results ``benchmarks/results/*.json`` written by ``python -m mllib bench --out``
  (``kind == "mllib-bench"``; other JSON files there are ignored).

``render_results()`` returns the markdown; ``update_readme()`` rewrites only the lines between
``<!-- results:start -->`` and ``<!-- results:end -->`` in ``docs/results.md`` (``RESULTS_PAGE``;
``python -m mllib bench --readme``; ``--check`` only compares). Both need a checkout of the
repository (an installed package has no results page to regenerate: a clear ``ValueError``).
A card whose ``standard_protocol`` is false (partial data) is marked "non-standard" in the table.
The table lists only the checkpoints the course uses: those a notebook of ``notebooks/`` names
(``courses_checkpoints``); superseded ones stay in the package until no notebook needs them, but
leave the table. Without a ``notebooks/`` folder every card is listed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

START = "<!-- results:start -->"
END = "<!-- results:end -->"
ROOT = Path(__file__).resolve().parent.parent
CARDS = "mllib/checkpoints"
BENCHMARKS = "benchmarks/results"
RESULTS_PAGE = "docs/results.md"
NOTEBOOKS = "notebooks"


def _load(folder: Path) -> list[tuple[str, dict]]:
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is not readable JSON ({err}); fix or remove it") from err
        if isinstance(data, dict):
            out.append((path.name, data))
    return out


def _get(d: dict, *keys, default="-"):
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return default


def _pct(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.1f}" if value <= 1 else f"{value:.1f}"


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def time_to_accuracy_cell(card: dict, marks=("90", "95", "98")) -> str:
    """The card's training time to a validation accuracy of 90 / 95 / 98% (``-``: never reached).

        >>> time_to_accuracy_cell({"val_time_to_accuracy": {"90": {"seconds": 61.0}, "95": {"seconds": 150.2}}})
        '61 s / 2.5 min / -'
    """
    reached = card.get("val_time_to_accuracy") or {}
    return " / ".join(_duration((reached.get(m) or {}).get("seconds")) for m in marks)


def cards_table(cards: list[tuple[str, dict]]) -> list[str]:
    """Markdown lines: one row per model card."""
    if not cards:
        return ["No model cards yet (`mllib/checkpoints/*.json`)."]
    lines = ["| checkpoint | algorithm | task | profile | device | training time | validation >= 90 / 95 / 98% after "
             "| test accuracy % (95% CI) | tasks | batch norm |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, c in cards:
        acc, ci = _get(c, "accuracy", "test_accuracy", default=None), _get(c, "ci95", default=None)
        accuracy = _pct(acc) + (f" ± {_pct(ci)}" if isinstance(ci, (int, float)) else "")
        task = f"{_get(c, 'ways')}-way {_get(c, 'shots')}-shot" + (
            " (non-standard: partial data)" if c.get("standard_protocol") is False else "")
        lines.append(f"| `{_get(c, 'checkpoint', 'file', default=name)}` | {_get(c, 'algo')} | {task} | "
                     f"{_get(c, 'profile')} | {_get(c, 'card', 'device')} | "
                     f"{_duration(_get(c, 'train_seconds', 'training_seconds', 'seconds', default=None))} | "
                     f"{time_to_accuracy_cell(c)} | "
                     f"{accuracy} | {_get(c, 'tasks', 'test_tasks')} | {_get(c, 'bn')} |")
    return lines


def bench_table(name: str, b: dict) -> list[str]:
    """Markdown lines for one benchmark result file."""
    cfg, host = b.get("config", {}), b.get("host", {})
    refs = b.get("references", {})
    loaded = [f"{n} {s.get('version', '')}".strip() for n, s in refs.items() if s.get("loaded")]
    missing = [n for n, s in refs.items() if not s.get("loaded")]
    device = str(host.get("device", "?")).split(" (")[0]
    threads = f", {cfg['threads']} torch thread(s) per process" if cfg.get("threads") else ""
    timing = (f"{cfg['rounds']} interleaved rounds of one meta-step per implementation (start rotated)"
              if cfg.get("rounds") else f"median of {cfg.get('steps')} x {cfg.get('repeats')} meta-steps interleaved "
                                        f"across implementations")
    load = [host.get(k) for k in ("loadavg_start", "loadavg_end")]
    load_text = (" Load average (1 min) " + " -> ".join(str(x[0]) for x in load if x) + "." if any(load) else "")
    lines = [f"**`{name}`**: {device}" + (f" ({host['cpu']}, {host.get('cpus')} cores)" if host.get("cpu") else "")
             + f"{threads}, torch {host.get('torch', '?')}, "
             f"{cfg.get('ways')}-way {cfg.get('shots')}-shot, {cfg.get('query')} queries per class, meta-batch "
             f"{cfg.get('meta_batch')}, {cfg.get('filters')} filters; {timing}. References loaded: "
             f"{', '.join(loaded) or 'none'}"
             + (f" (not loaded: {', '.join(missing)})" if missing else "")
             + ". Gradients " + ("agree" if b.get("gradients_agree") else "**DISAGREE**") + "." + load_text
             + (f" {b['note']}" if b.get("note") else ""), "",
             "| algorithm | implementation | median s / meta-step | min s | peak memory MB |",
             "| --- | --- | --- | --- | --- |"]
    for r in b.get("results", []):
        mem = r.get("peak_mem_mb") if r.get("peak_mem_mb") is not None else r.get("peak_rss_mb")
        kind = "GPU" if r.get("peak_mem_mb") is not None else "RSS"
        lines.append(f"| {r['algo']} | {r['impl']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{mem:.0f} ({kind}) |")
    for r in b.get("ratios", []):
        lines.append("")
        if "ratio_q75" in r:  # per-round ratios (bench version 2)
            lines.append(f"{r['algo']}: {r['mllib']} / fastest reference of each round = **{r['ratio_median']:.2f}** "
                         f"(median of {r['rounds']} rounds; quartiles {r['ratio_q25']:.2f}-{r['ratio_q75']:.2f}, "
                         f"worst round {r['ratio_worst']:.2f}).")
        else:
            lines.append(f"{r['algo']}: {r['mllib']} / fastest reference ({r['reference']}) = "
                         f"**{r['ratio_median']:.2f}** (median), {r['ratio_min']:.2f} (min).")
    return lines


def names_a_checkpoint(text: str, stem: str) -> bool:
    """Whether notebook ``text`` names checkpoint ``stem``: literally, or by an f-string such as
    ``maml_5w1s_seed{seed}`` (a ``{...}`` field stands for any letters and digits).

        >>> names_a_checkpoint('CHECKPOINTS / f"m_seed{seed}.pt"', "m_seed2"), names_a_checkpoint("m_seed", "m")
        (True, False)
    """
    if re.search(rf"(?<![A-Za-z0-9_]){re.escape(stem)}(?![A-Za-z0-9_])", text):
        return True
    for pattern in set(re.findall(r"[A-Za-z0-9_]*\{[A-Za-z_]\w*\}[A-Za-z0-9_{}]*", text)):
        if re.fullmatch(re.sub(r"\\\{[A-Za-z_]\w*\\\}", "[A-Za-z0-9]+", re.escape(pattern)), stem):
            return True
    return False


def courses_checkpoints(cards: list[tuple[str, dict]], root: Path) -> list[tuple[str, dict]]:
    """The cards of checkpoints some notebook in ``root/notebooks`` names (all when there is no such folder)."""
    folder = root / NOTEBOOKS
    if not folder.is_dir():
        return cards
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.ipynb")))
    return [(name, card) for name, card in cards if names_a_checkpoint(text, Path(name).stem)]


def render_results(root: str | Path = ROOT) -> str:
    """The markdown of the results block of ``docs/results.md`` (without the markers)."""
    root = Path(root)
    lines = ["Generated by `python -m mllib bench --readme` from `mllib/checkpoints/*.json` and "
             "`benchmarks/results/*.json`; do not edit by hand.", "", "### Trained checkpoints", "",
             "The checkpoints a notebook loads; superseded ones stay in `mllib/checkpoints/` but are not listed.", ""]
    lines += cards_table(courses_checkpoints(_load(root / CARDS), root))
    lines += ["", "### Seconds per meta-step", ""]
    benches = [(n, b) for n, b in _load(root / BENCHMARKS) if b.get("kind") == "mllib-bench"]
    if not benches:
        lines.append("No benchmark results yet (`python -m mllib bench --out benchmarks/results/NAME.json`).")
    for i, (name, b) in enumerate(benches):
        if i:
            lines.append("")
        lines += bench_table(name, b)
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    """The text between the markers in ``text``, or None when the markers are absent."""
    if START not in text or END not in text or text.index(START) > text.index(END):
        return None
    return text[text.index(START) + len(START):text.index(END)].strip("\n")


def replace_block(text: str, start: str, end: str, body: str) -> str | None:
    r"""``text`` with the lines between the markers ``start`` and ``end`` replaced by ``body`` (the markers
    stay, each on its own line around ``body``); None when a marker is missing. Every generated block of
    the docs is written this way (this module's results block, ``benchmarks/eval_protocols.py``,
    ``benchmarks/paper_table.py``, through :func:`write_block`).

        >>> replace_block("a\n<!-- s -->\nold\n<!-- e -->\nz", "<!-- s -->", "<!-- e -->", "new")
        'a\n<!-- s -->\nnew\n<!-- e -->\nz'
        >>> replace_block("no markers", "<!-- s -->", "<!-- e -->", "new") is None
        True
    """
    if start not in text or end not in text:
        return None
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def write_block(path: str | Path, start: str, end: str, body: str) -> None:
    """Rewrite the block between the markers ``start`` and ``end`` of the file ``path`` with ``body``
    (:func:`replace_block`); a file without the markers stops the script with one line saying where they go.
    """
    path = Path(path)
    text = replace_block(path.read_text(), start, end, body)
    if text is None:
        raise SystemExit(f"{path} has no {start} ... {end} markers: add them where the table goes")
    path.write_text(text)


def update_readme(readme: str | Path | None = None, root: str | Path | None = None, check: bool = False) -> bool:
    """Rewrite the results block of ``docs/results.md`` (or ``readme``) from the files; return True if it
    changed (or would, with ``check``).

    ``root``: the repository checkout (default: the one mllib runs from); ``ValueError`` when there is none.
    """
    root = Path(ROOT if root is None else root)
    if readme is None and not (root / RESULTS_PAGE).is_file():
        raise ValueError(f"the results page ({RESULTS_PAGE}) is regenerated in a checkout of the course repository, "
                         f"and {root} is not one (an installed package?): run `python -m mllib bench --readme` in a "
                         f"git clone, with mllib installed from it (pip install -e .)")
    readme = Path(readme) if readme is not None else root / RESULTS_PAGE
    text = readme.read_text()
    if readme_block(text) is None:
        raise ValueError(f"{readme} has no '{START}' ... '{END}' markers; add them where the results go")
    new = render_results(root)
    if readme_block(text) == new:
        return False
    if not check:
        readme.write_text(replace_block(text, START, END, new))
    return True
