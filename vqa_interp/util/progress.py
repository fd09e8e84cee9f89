"""Progress bars, one at a time on the terminal: a forked helper (:mod:`vqa_interp.util.forked`)
draws none, so its bar never overwrites the one its parent draws on the same line.
``TQDM_DISABLE=1`` turns every bar off, as for any tqdm program."""

from __future__ import annotations

from tqdm.auto import tqdm as _tqdm

_HIDDEN: list[bool] = [False]


def hide_bars() -> None:
    """No bars from this process on (called in a forked helper)."""
    _HIDDEN[0] = True


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm``, hidden in a forked helper."""
    if _HIDDEN[0]:
        kwargs["disable"] = True
    return _tqdm(*args, **kwargs)
