"""Scoring token attributions against the words that decide an answer (where a dataset knows them).

A question's tokens are ranked by the *magnitude* of their attribution (a word the answer rests on
may push towards or away from the target). Two scores per (question, target):

- ``token_auc``: the probability that a decisive token outranks a non-decisive one (ties count
  half): the ROC AUC of ``|attribution|`` for "decisive" over the question's tokens (padding
  excluded). 0.5 is a random ranking; undefined (NaN) when every token, or none, is decisive.
- ``token_top1``: 1 when the highest-magnitude token is decisive (ties share the credit
  fractionally: the fraction of the tied top tokens that are decisive); ``token_top1_chance`` is
  its value for a random ranking, ``n_decisive / n_tokens``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.stats


def decisive_token_scores(attribution: np.ndarray, decisive: Sequence[int]) -> dict[str, float]:
    """``attribution [T]`` (one question's tokens, no padding), ``decisive``: positions in it.
    Returns ``token_auc``, ``token_top1``, ``token_top1_chance`` (NaN where undefined)."""
    magnitude = np.abs(np.asarray(attribution, dtype=np.float64))
    n = len(magnitude)
    is_decisive = np.zeros(n, bool)
    positions = [p for p in decisive if 0 <= p < n]
    is_decisive[positions] = True
    n_pos = int(is_decisive.sum())
    nan = float("nan")
    if n == 0 or n_pos == 0 or not np.isfinite(magnitude).all():
        return {"token_auc": nan, "token_top1": nan, "token_top1_chance": nan}
    top = np.flatnonzero(magnitude == magnitude.max())
    result = {"token_top1": float(is_decisive[top].mean()), "token_top1_chance": n_pos / n}
    if n_pos == n:
        return {"token_auc": nan, **result}
    # Mann-Whitney U from average ranks: the same number as sklearn's roc_auc_score (tested)
    ranks = scipy.stats.rankdata(magnitude)
    u = ranks[is_decisive].sum() - n_pos * (n_pos + 1) / 2
    return {"token_auc": float(u / (n_pos * (n - n_pos))), **result}
