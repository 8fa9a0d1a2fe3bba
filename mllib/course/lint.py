"""Static checks of a notebook's text and stored state (no kernel needed): what a reader would trip over.

* **maths**: no doubled backslash before a command inside ``$...$`` or ``$$...$$`` (``\\\\frac``
  renders as a line break followed by the word "frac"; it happens when Markdown is written from a
  Python string without ``r"..."``);
* **images**: every image a Markdown cell shows (``![...](path)`` or ``<img src=...>``) exists,
  relative to the notebook (web addresses are not fetched; ``attachment:`` names must be attached);
* **cross-references**: every link to a notebook (``[...](02_x.ipynb#anchor)``) names a notebook of
  the folder and, with an anchor, one of its headings; every "notebook NN" in the prose names a
  notebook of the folder; every "section N" names a numbered heading (``## N. ...``) of the same
  notebook (or of notebook NN, for "section N of notebook NN");
* **code width**: code lines of at most ``MAX_CODE_LINE`` characters (JupyterLab does not wrap
  code; longer lines run off the right edge). Generated cells (tag ``colab-setup``) are exempt;
* **stored outputs**: no ``execute_result`` that is only a multi-line ``repr`` (a cell that ends
  with a bare expression such as ``model.to(device)`` prints the module's repr); no absolute path of
  the machine that ran the notebook (``/tmp/...``, ``/home/...``, ``/root/...``, ``/work/...``,
  ``/Users/...``, ``C:\\Users\\...``: ``ABSOLUTE_PATH``) and no text about how the course was made
  ("other engineers", "this session", "maintainer", "TODO", ...: ``MAKING_OF``) in any stored output
  (streams, results, displays, tracebacks); no output larger than ``MAX_OUTPUT_BYTES`` (2 MB);
* **tables that compare accuracies** (a Markdown table, or a printed block of at least two rows with
  ``NN% +- c``, whose row labels name at least two different things): the table states the
  batch-norm mode, the test protocol and the training budget (``TABLE_NEEDS``), either in its header
  or caption (the same cell's text outside the table, or the output's lines that are not rows), or in
  every row;
* **kernelspec**: the stored display name is the one the installed kernel reports, so Jupyter does
  not mark the notebook as modified when it opens it.

:func:`lint_notebook` returns one sentence per problem; ``python -m mllib course check`` runs it
on every notebook (with :mod:`mllib.course.claims`), and so does the unit test of the real notebooks.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from nbformat import NotebookNode

from .figures import COMPARISON_NEEDS
from .nbio import list_notebooks, read_notebook, source, tags

MAX_CODE_LINE = 100
MAX_OUTPUT_BYTES = 2_000_000   # one stored output, as JSON; the book's largest (a figure) is ~0.2 MB
GENERATED_TAGS = ("colab-setup",)

_FENCE = re.compile(r"```.*?```", re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.S)
_DOUBLED = re.compile(r"\\\\(?=[A-Za-z;,!:{}])")
_IMAGE_MD = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_HTML = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.I)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?\s*\)")
_NOTEBOOK_MENTION = re.compile(r"\bnotebooks?\s+((?:\d\d)(?:\s*(?:[–-]|,|and|or)\s*\d\d)*)", re.I)
_SECTION_MENTION = re.compile(r"\bsections?\s+(\d+)(?![.\d]*\d)(?:\s+of\s+notebook\s+(\d\d))?", re.I)
_NUMBERED_HEADING = re.compile(r"^#{1,6}\s+(\d+)\.\s", re.M)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """Markdown without fenced code blocks and code spans (whose contents are not prose or maths)."""
    return _CODE_SPAN.sub(" ", _FENCE.sub(" ", text))


def math_segments(text: str) -> list[str]:
    """The contents of every ``$$...$$`` and ``$...$`` of a Markdown text (code removed first)."""
    text = prose(text)
    display = _DISPLAY_MATH.findall(text)
    return display + _INLINE_MATH.findall(_DISPLAY_MATH.sub(" ", text))


def heading_anchors(nb: NotebookNode) -> set[str]:
    """The anchors Jupyter (spaces to dashes) and GitHub (lower case, punctuation dropped) give headings."""
    anchors = set()
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for heading in _HEADING.findall(source(cell)):
            anchors.add(heading.replace(" ", "-"))
            github = re.sub(r"[^\w\- ]", "", heading.lower(), flags=re.U).replace(" ", "-")
            anchors.add(github)
    return anchors


def numbered_sections(nb: NotebookNode) -> set[int]:
    return {int(n) for cell in nb.cells if cell.cell_type == "markdown"
            for n in _NUMBERED_HEADING.findall(source(cell))}


def _notebook_numbers(folder: Path) -> dict[str, Path]:
    return {p.name[:2]: p for p in list_notebooks(folder) if p.name[:2].isdigit()} if folder.is_dir() else {}


def markdown_problems(nb: NotebookNode, name: str, folder: str | Path) -> list[str]:
    """Maths, images and cross-references of every Markdown cell of ``nb`` (in ``folder``)."""
    folder = Path(folder)
    numbers = _notebook_numbers(folder)
    own_sections = numbered_sections(nb)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = source(cell)
        where = f"{name} cell {index}"
        for segment in math_segments(text):
            commands = [re.match(r"[A-Za-z]+|.", segment[m.end():]).group(0) for m in _DOUBLED.finditer(segment)]
            if commands:
                shown = ", ".join(dict.fromkeys("\\" + c for c in commands))
                problems.append(f"{where}: doubled backslash before {shown} in the maths "
                                f"({segment.strip()[:40]!r}...): renders as line breaks; write one backslash")
        plain = prose(text)
        for target in _IMAGE_MD.findall(plain) + _IMAGE_HTML.findall(plain):
            if re.match(r"^[a-z]+://", target) or target.startswith("data:"):
                continue
            if target.startswith("attachment:"):
                if target.split(":", 1)[1] not in cell.get("attachments", {}):
                    problems.append(f"{where}: image {target!r} is not attached to the cell")
            elif not (folder / target.split("#")[0]).is_file():
                problems.append(f"{where}: image {target!r} does not exist (relative to {folder})")
        for target in _LINK.findall(plain):
            if re.match(r"^[a-z]+:", target) and not target.startswith("#"):
                continue
            path, _, anchor = target.partition("#")
            if path and not path.endswith(".ipynb"):
                if not (folder / path).exists():
                    problems.append(f"{where}: link {target!r} points to a file that does not exist")
                continue
            other = nb if not path else (read_notebook(folder / path) if (folder / path).is_file() else None)
            if other is None:
                problems.append(f"{where}: link {target!r} names a notebook that does not exist")
            elif anchor and anchor not in heading_anchors(other):
                problems.append(f"{where}: link {target!r}: no heading with the anchor {anchor!r}")
        for match in _NOTEBOOK_MENTION.finditer(plain):
            for number in re.findall(r"\d\d", match.group(1)):
                if numbers and number not in numbers:
                    problems.append(f"{where}: 'notebook {number}' is mentioned, but there is no notebook "
                                    f"{number}_*.ipynb in {folder}")
        for match in _SECTION_MENTION.finditer(plain):
            before = plain[max(0, match.start() - 40):match.start()].lower()
            if "paper" in before or "et al" in before:
                continue                                   # a section of a cited paper
            number, other_nb = int(match.group(1)), match.group(2)
            if other_nb:
                target = numbers.get(other_nb)
                sections = numbered_sections(read_notebook(target)) if target else set()
            else:
                sections = own_sections
            if number not in sections:
                whose = f"notebook {other_nb}" if other_nb else "this notebook"
                problems.append(f"{where}: 'section {number}' is mentioned, but {whose} has no heading "
                                f"numbered {number}")
    return problems


def code_problems(nb: NotebookNode, name: str, max_line: int = MAX_CODE_LINE) -> list[str]:
    """Code lines longer than ``max_line`` characters (generated cells exempt)."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or set(tags(cell)) & set(GENERATED_TAGS):
            continue
        for number, line in enumerate(source(cell).splitlines(), 1):
            if len(line) > max_line:
                problems.append(f"{name} cell {index} line {number}: {len(line)} characters (at most {max_line}; "
                                f"JupyterLab does not wrap code)")
    return problems


def stored_outputs(nb: NotebookNode) -> Iterator[tuple[int, int, dict]]:
    """``(cell index, output number, output)`` for every stored output of every code cell."""
    for index, cell in enumerate(nb.cells):
        for number, output in enumerate(cell.get("outputs", []) if cell.cell_type == "code" else []):
            yield index, number, output


def output_problems(nb: NotebookNode, name: str) -> list[str]:
    """Stored ``execute_result`` outputs that are only a multi-line repr of an object."""
    problems = []
    for index, _number, output in stored_outputs(nb):
        data = output.get("data", {})
        if output.get("output_type") == "execute_result" and set(data) == {"text/plain"}:
            text = data["text/plain"]
            text = "".join(text) if isinstance(text, list) else text
            if text.count("\n") >= 2:
                problems.append(f"{name} cell {index}: ends with a bare expression whose repr is printed "
                                f"({text.splitlines()[0][:40]!r}...); assign it or end the cell with ';'")
    return problems


def output_size_problems(nb: NotebookNode, name: str, limit: int = MAX_OUTPUT_BYTES) -> list[str]:
    """Stored outputs larger than ``limit`` bytes (their JSON, as the file stores them)."""
    problems = []
    for index, number, output in stored_outputs(nb):
        size = len(json.dumps(output, ensure_ascii=False).encode("utf-8"))
        if size > limit:
            problems.append(f"{name} cell {index} output {number}: {size / 1e6:.1f} MB stored (at most "
                            f"{limit / 1e6:g} MB); print less, save a smaller figure, or clear the output")
    return problems


ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])(?:/(?:tmp|home|root|work|Users|private/var|var/folders|mnt|scratch)/[^\s'\"]*"
                           r"|[A-Za-z]:\\(?:Users|Temp|tmp)\\[^\s'\"]*)")
MAKING_OF = re.compile(r"\b(?:other engineers?|another engineer|this session|(?:the )?maintainers?|TODO|FIXME|XXX|"
                       r"the lead|helper session)\b")


def output_texts(cell) -> list[tuple[int, str]]:
    """``(output index, text)`` for every text a code cell's stored outputs show (streams, text results and
    displays, error tracebacks)."""
    texts = []
    for number, output in enumerate(cell.get("outputs", []) if cell.cell_type == "code" else []):
        parts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items()
                                            if k.startswith("text/") or k == "application/json"]
        parts += list(output.get("traceback", []))
        for part in parts:
            text = "".join(part) if isinstance(part, list) else part
            if isinstance(text, str) and text:
                texts.append((number, text))
    return texts


def output_content_problems(nb: NotebookNode, name: str) -> list[str]:
    """Stored outputs that show an absolute path of the machine or text about how the course was made."""
    problems = []
    for index, cell in enumerate(nb.cells):
        for number, text in output_texts(cell):
            for pattern, what, fix in ((ABSOLUTE_PATH, "an absolute path", "print it relative to the working "
                                        "folder or by name"),
                                       (MAKING_OF, "text about how the course was made", "remove it from "
                                        "what the cell prints (keep such notes in the commit history)")):
                found = sorted({m.group(0) for m in pattern.finditer(text)})
                if found:
                    problems.append(f"{name} cell {index} output {number}: shows {what} "
                                    f"({', '.join(repr(f[:60]) for f in found[:3])}); {fix}")
    return problems


# ----------------------------------------------------------------------------- tables of accuracies

TABLE_NEEDS = COMPARISON_NEEDS   # shared with the figure check (mllib.course.figures)
_ACCURACY_ROW = re.compile(r"\d(?:\.\d+)?\s*%\s*(?:±|\+-|\+/-)|(?:±|\+-|\+/-)\s*\d+(?:\.\d+)?\s*%")
_PERCENT = re.compile(r"\d(?:\.\d+)?\s*%")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _row_label(row: str) -> str:
    """What a row is about: its text before the first number, digits and punctuation dropped."""
    cells = [c.strip() for c in row.strip().strip("|").split("|")] if row.lstrip().startswith("|") else [row]
    head = re.split(r"\d", cells[0] if len(cells) > 1 else row, maxsplit=1)[0]
    return " ".join(re.sub(r"[^A-Za-z ]", " ", head).lower().split())


def table_problems_for(rows: list[str], caption: str, where: str) -> list[str]:
    """The needs of ``TABLE_NEEDS`` that neither the caption nor every row states ([] when the rows do not
    compare at least two differently labelled entries)."""
    if len({_row_label(r) for r in rows}) < 2:
        return []
    missing = [need for need, pattern in TABLE_NEEDS.items()
               if not pattern.search(caption) and not all(pattern.search(r) for r in rows)]
    if not missing:
        return []
    first = " ".join(rows[0].split())
    return [f"{where}: a table comparing accuracies ({len(rows)} rows, e.g. {first[:70]!r}) does not state the "
            f"{', the '.join(missing)} of its entries (add a column, or say it in the table's caption)"]


def markdown_tables(text: str) -> list[tuple[list[str], str]]:
    """``(rows, caption)`` for every Markdown table of ``text``: the data rows, and the text outside the table."""
    lines = prose(text).splitlines()
    tables, index = [], 0
    while index < len(lines):
        if _TABLE_ROW.match(lines[index]) and index + 1 < len(lines) and _SEPARATOR.match(lines[index + 1]):
            end = index + 2
            while end < len(lines) and _TABLE_ROW.match(lines[end]):
                end += 1
            header, rows = lines[index], lines[index + 2:end]
            caption = "\n".join(lines[:index] + [header] + lines[end:])
            tables.append((rows, caption))
            index = end
        else:
            index += 1
    return tables


def table_problems(nb: NotebookNode, name: str) -> list[str]:
    """Tables (Markdown, or printed in a stored output) that compare accuracies without stating the batch-norm
    mode, the test protocol and the training budget."""
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for rows, caption in markdown_tables(source(cell)):
                accuracy = [r for r in rows if _PERCENT.search(r)]
                if len(accuracy) >= 2 or (len(rows) >= 2 and re.search(r"accurac", caption, re.I)
                                          and any(_PERCENT.search(r) or re.search(r"\d", r) for r in rows)):
                    problems += table_problems_for(rows, caption, f"{name} cell {index}")
        for number, text in output_texts(cell):
            lines = text.splitlines()
            rows = [line for line in lines if _ACCURACY_ROW.search(line)]
            if len(rows) >= 2:
                caption = "\n".join(line for line in lines if not _ACCURACY_ROW.search(line))
                problems += table_problems_for(rows, caption, f"{name} cell {index} output {number}")
    return problems


def installed_kernel_display_name(kernel_name: str) -> str | None:
    """The display name of the installed kernel ``kernel_name``; None when it is not installed."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:  # pragma: no cover - jupyter_client comes with nbclient
        return None
    try:
        return KernelSpecManager().get_kernel_spec(kernel_name).display_name
    except NoSuchKernel:
        return None


def kernelspec_problems(nb: NotebookNode, name: str, expected: str | None = None) -> list[str]:
    """The stored kernelspec against the installed kernel's (``expected`` display name overrides)."""
    spec = nb.metadata.get("kernelspec")
    if not spec:                     # nothing stored (a notebook written by a script): nothing to compare
        return []
    kernel = spec.get("name", "python3")
    expected = expected if expected is not None else installed_kernel_display_name(kernel)
    if expected is None or spec.get("display_name") == expected:
        return []
    return [f"{name}: kernelspec display name {spec.get('display_name')!r} differs from the installed "
            f"kernel's {expected!r} (Jupyter then marks the notebook modified on opening; re-execute it "
            f"with `python -m mllib course execute`)"]


def lint_notebook(path: str | Path, nb: NotebookNode | None = None) -> list[str]:
    """Every problem :mod:`mllib.course.lint` finds in the notebook at ``path``."""
    path = Path(path)
    nb = nb if nb is not None else read_notebook(path)
    return (markdown_problems(nb, path.name, path.parent) + code_problems(nb, path.name)
            + output_problems(nb, path.name) + output_size_problems(nb, path.name)
            + output_content_problems(nb, path.name)
            + table_problems(nb, path.name) + kernelspec_problems(nb, path.name))
