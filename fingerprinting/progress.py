"""Progress a person can watch on long work, without a dependency.

On a terminal the bar redraws one line; in a log file (CI, `nohup`) it writes
a line at most every few seconds, so logs stay short. Everything goes to
stderr, leaving stdout for results.
"""

from __future__ import annotations

import sys
import time

QUIET = False


def log(message: str) -> None:
    if not QUIET:
        print(message, file=sys.stderr, flush=True)


class Bar:
    """`with Bar("attack", total=100) as bar: bar.update(1, "loss 0.3")`."""

    def __init__(self, desc: str, total: int, unit: str = "it", min_interval: float = 5.0):
        self.desc, self.total, self.unit = desc, max(total, 0), unit
        self.done, self.start = 0, time.time()
        self.tty = sys.stderr.isatty()
        self.min_interval = 0.2 if self.tty else min_interval
        self.last = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1, info: str = "") -> None:
        self.done += n
        now = time.time()
        if QUIET or (now - self.last < self.min_interval and self.done < self.total):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        line = (
            f"{self.desc}: {pct:5.1f}% {self.done}/{self.total} {self.unit} "
            f"[{elapsed:.0f}s<{eta:.0f}s] {info}"
        )
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not QUIET and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.last = 0.0
