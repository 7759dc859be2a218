"""Progress of the long loops (training steps, generation, judging, CLIP scoring): a tqdm bar on a terminal,
elsewhere (a Dagster run, a pod's log) one log line at most every ``every`` seconds with the count, the rate
and the time left, as tqdm formats them ("generate: 45/100 (45%) elapsed 00:10, left 00:12, 4.50 req/s")."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

log = logging.getLogger("genixer.progress")
EVERY_S = 30.0
LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) elapsed {elapsed}, left {remaining}, {rate_fmt}{postfix}"


class _LogLines:
    """A file-like target for tqdm that turns each refresh into one log line."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self.logger.info(text)

    def flush(self) -> None:
        pass


def progress(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", every: float = EVERY_S,
             logger: logging.Logger | None = None) -> tqdm:
    """tqdm over ``iterable`` (or a manual bar of ``total``): an interactive bar when stderr is a terminal,
    else log lines (``logger``, default ``genixer.progress``) at most every ``every`` seconds, plus the last."""
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=_LogLines(logger or log), mininterval=every,
                maxinterval=every, bar_format=LOG_FORMAT)
