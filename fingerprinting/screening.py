"""Many suspects verified against one fingerprint: `verify --suspects=FILE`.

A suspect list is a text file of suspect specs, one per line, with `#`
comments and blank lines ignored. A spec may be followed by the input-format
flags that suspect needs (`model.onnx --layout=nchw --mean=0.5 --std=0.5`),
which override the command line's for that line only. Each suspect is
verified on its own; one
that fails (an unreachable URL, a file that is not a model, an answer that is
not labels) gets a row saying why, and the others are verified all the same.
The rows come out as JSON lines and as one markdown table.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from fingerprinting import errors
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import input_format
from fingerprinting import progress
from fingerprinting.suspects import printable


_COMMENT = re.compile(r"(^|\s)#.*")


def read_specs(path: str) -> list[input_format.Entry]:
    """The suspects a suspect list names, in order, each with its own flags."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise errors.StorageError(f"{path}: cannot read the suspect list ({e})") from None
    # A '#' opens a comment at the start of a line or after a space, so a path
    # or URL that holds one stays whole.
    entries = [
        input_format.parse_line(text, f"{path}:{n}")
        for n, text in ((n, _COMMENT.sub("", line).strip()) for n, line in enumerate(lines, 1))
        if text
    ]
    if not entries:
        raise errors.ConfigError(f"{path}: the suspect list names no suspect")
    return entries


def verify_each(
    fp, entries: list[input_format.Entry], load: Callable[[input_format.Entry], object], **kwargs
) -> list[dict]:
    """One row per entry: `verify_suspect`'s result, or the error that stopped it.

    Only a user error (a suspect that cannot be loaded or queried) becomes a
    row; a bug still raises."""
    rows = []
    for i, entry in enumerate(entries):
        spec = entry.spec
        progress.log(f"suspect {i + 1}/{len(entries)}: {printable(spec)}")
        start = time.time()
        try:
            row = fp_lib.verify_suspect(fp, load(entry), **kwargs)
        except errors.UserError as e:
            row = {"suspect": spec, "error": str(e), "seconds": round(time.time() - start, 3)}
            progress.log(f"  failed: {e}")
        else:
            progress.log(f"  {fp_lib.verdict_summary(row)}")
        rows.append({"spec": spec, **row})
    return rows


def verdict(row: dict) -> str:
    if "error" in row:
        return "failed: " + printable(row["error"], 120).replace("|", "\\|")
    derived = [
        name
        for name, key in (
            ("theta", "verified"),
            ("calibrated", "verified_calibrated"),
            ("twin test", "verified_twin"),
        )
        if row.get(key)
    ]
    return f"derived ({' and '.join(derived)})" if derived else "not derived"


def _shortened(spec: str, limit: int = 72) -> str:
    """A spec that fits a table cell: a long path or URL keeps its end, which names the model."""
    text = printable(spec, 1000)
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _number(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def table(rows: list[dict]) -> str:
    """The markdown table of `verify_each`'s rows."""
    header = [
        "suspect",
        "fingerprint accuracy",
        "decoy accuracy",
        "p-value",
        "verdict",
        "queries",
        "seconds",
    ]
    body = [
        [
            "`" + _shortened(r["spec"]).replace("|", "\\|").replace("`", "'") + "`",
            _number(r.get("fingerprint_accuracy"), ".3f"),
            _number(r.get("decoy_accuracy"), ".3f"),
            _number(r.get("p_value"), ".2g"),
            verdict(r),
            _number(r.get("n_queries"), "d"),
            _number(r.get("seconds"), ".1f"),
        ]
        for r in rows
    ]
    return files.md_table(header, body)


def summary(rows: list[dict]) -> str:
    failed = sum("error" in r for r in rows)
    keys = ("verified", "verified_calibrated", "verified_twin")
    derived = sum(any(r.get(k, False) for k in keys) for r in rows)
    return (
        f"{len(rows)} suspects: {derived} verified as derived (at theta, by the calibrated "
        f"test or by the twin test), {len(rows) - failed - derived} not, {failed} failed"
    )
