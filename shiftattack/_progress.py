"""Progress bars that read well both on a terminal and in a log file.

On a terminal :func:`tqdm` is ``tqdm.auto.tqdm``: one bar redrawn in place. When the bar's
stream is not a terminal (output redirected to a file, a CI log, ``nohup``) it is
:class:`LineBar`: a plain line at most every :data:`LOG_INTERVAL` seconds and one at the end,
never ``\\r`` frames piling up.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm as _terminal_tqdm
from tqdm.std import tqdm as _std_tqdm

__all__ = ["LOG_INTERVAL", "LineBar", "tqdm"]

#: seconds between two progress lines in a log file
LOG_INTERVAL = 10.0


class LineBar(_std_tqdm):
    """tqdm writing whole lines (``\\n``), throttled to one per :data:`LOG_INTERVAL` seconds."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", LOG_INTERVAL), kwargs["mininterval"])
        kwargs["dynamic_ncols"] = False
        kwargs.setdefault("ncols", 100)
        kwargs["position"] = None
        kwargs["leave"] = True
        self._written, self._at, self._final = None, None, False
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):  # noqa: D102  (tqdm's hook)
        now = time.monotonic()
        if not self._final and self._at is not None and now - self._at < LOG_INTERVAL:
            return True  # refreshes between two lines (set_postfix, nested bars) are dropped
        text = self.__str__() if msg is None else msg
        if not text.strip() or text == self._written:
            return True
        self._written, self._at = text, now
        self.fp.write(text.strip("\r") + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable:
            self._final = True  # the final count, once
        super().close()

    def clear(self, nolock=False):  # nothing to erase in a log
        return None


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def tqdm(*args, **kwargs):
    """A progress bar on ``file`` (default stderr): a terminal bar, or :class:`LineBar` in a log."""
    stream = kwargs.get("file") or sys.stderr
    if kwargs.get("disable") or _is_terminal(stream):
        return _terminal_tqdm(*args, **kwargs)
    return LineBar(*args, **kwargs)


tqdm.write = _std_tqdm.write
