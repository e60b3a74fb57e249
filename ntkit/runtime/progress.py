"""Progress of long work, for a terminal and for a log.

Every progress bar of ntkit comes from ``bar``. How it shows is one setting (``set_mode``, the
command line's ``ntkit --progress``, or ``$NTKIT_PROGRESS``):

- ``bar``: tqdm's bar, redrawn in place (carriage returns) as it advances;
- ``lines``: one plain line per ``LINE_INTERVAL`` seconds or per 5% of the total (and the last one),
  each ending in a newline: a log file or a Slurm output holds a few dozen lines, not thousands of
  redraws;
- ``none``: nothing;
- ``auto`` (the default): ``bar`` when stderr is a terminal, else ``lines``.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

MODES = ("auto", "bar", "lines", "none")
LINE_INTERVAL = 30.0  # seconds between two progress lines at most (a 5% step prints earlier)
_mode = os.environ.get("NTKIT_PROGRESS", "auto")


def set_mode(mode: str) -> None:
    global _mode
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: one of {', '.join(MODES)}")
    _mode = mode


def mode() -> str:
    """The mode in force, ``auto`` resolved against stderr."""
    if _mode == "auto":
        return "bar" if getattr(sys.stderr, "isatty", lambda: False)() else "lines"
    return _mode if _mode in MODES else "auto"


class LineBar(tqdm):
    """tqdm that writes whole lines (no carriage return), at most every ``interval`` seconds or
    5% of the total, and once when it closes."""

    def __init__(self, *args, interval: float = LINE_INTERVAL, **kwargs):
        kwargs.update(mininterval=0, miniters=1, dynamic_ncols=False, ncols=100)
        self._interval, self._last_time, self._last_n = interval, -float("inf"), None
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):  # tqdm calls this to draw; here: a line when due
        if self.disable:
            return True
        now = time.monotonic()
        step = self.total * 0.05 if self.total else None
        due = (self._last_n is None or now - self._last_time >= self._interval
               or (step is not None and self.n - self._last_n >= step) or (self.total and self.n >= self.total))
        if due and self.n != self._last_n:
            self.fp.write(self.__str__().strip() + "\n")
            self.fp.flush()
            self._last_time, self._last_n = now, self.n
        return True

    def close(self):
        if not self.disable and self.n != self._last_n:
            self._last_time = -float("inf")
            self.display()
        self.disable = True  # tqdm's own close would redraw with a carriage return
        super().close()


def bar(total: float | None = None, *, desc: str = "", unit: str = "it", enabled: bool = True, **kwargs) -> tqdm:
    """A progress bar in the mode in force (see the module docstring); ``enabled=False``: none."""
    m = mode()
    if not enabled or m == "none":
        return tqdm(total=total, desc=desc, unit=unit, disable=True, **kwargs)
    if m == "lines":
        kwargs.pop("dynamic_ncols", None)
        return LineBar(total=total, desc=desc, unit=unit, **kwargs)
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, **kwargs)
