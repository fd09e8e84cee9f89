"""Figures of the explain stage: the question's words shaded next to the image map, the
deletion/insertion curves against random maps, and the image's share by split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from vqa_interp.analysis.figures import new_figure
from vqa_interp.analysis.statistics import SCENARIOS, scenario_mask
from vqa_interp.metrics.prepare import sigmoid_for_display


def token_figure(cases: list[dict]) -> Figure:
    """Per case: the image with the method's map over it, and the question's words shaded by their
    attribution (red: towards the target answer, blue: away; darker is larger, scaled per question),
    decisive words (where known) underlined in bold.

    Each case: ``image [S, S, 3]`` uint8, ``attribution [S, S]``, ``words`` (list of str),
    ``scores [T]`` (normalised token attributions), ``decisive`` (positions), ``title`` (str).
    """
    fig, axes = new_figure(
        len(cases), 2, figsize=(9, 1.9 * len(cases)), squeeze=False, gridspec_kw={"width_ratios": [1, 3.2]}
    )
    cmap = colormaps["RdBu_r"]
    for (image_ax, text_ax), case in zip(axes, cases):
        image_ax.imshow(case["image"])
        overlay = sigmoid_for_display(case["attribution"][None])[0]
        image_ax.imshow(
            overlay,
            cmap="inferno",
            alpha=0.55,
            extent=(-0.5, case["image"].shape[1] - 0.5, case["image"].shape[0] - 0.5, -0.5),
        )
        image_ax.axis("off")
        text_ax.axis("off")
        text_ax.set_xlim(0, 1)
        text_ax.set_ylim(0, 1)
        text_ax.text(0, 0.92, case["title"], fontsize=7.5, va="top", ha="left")
        scores = np.asarray(case["scores"], float)
        bound = max(float(np.abs(scores).max()) if len(scores) else 0.0, 1e-12)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
        x = 0.0
        renderer = FigureCanvasAgg(fig).get_renderer()  # to measure each word's width
        for position, (word, score) in enumerate(zip(case["words"], scores)):
            decisive = position in case["decisive"]
            colour = cmap(norm(score))
            dark = abs(score) / bound > 0.6
            label = text_ax.text(
                x,
                0.35,
                word,
                fontsize=11,
                va="center",
                ha="left",
                fontweight="bold" if decisive else "normal",
                color="white" if dark else "black",
                bbox={
                    "facecolor": colour,
                    "edgecolor": "black" if decisive else "none",
                    "boxstyle": "round,pad=0.25",
                    "linewidth": 1.2,
                },
            )
            width = label.get_window_extent(renderer=renderer).transformed(text_ax.transData.inverted()).width
            text_ax.text(x + width / 2, 0.05, f"{score:+.2f}", fontsize=6.5, va="center", ha="center", color="0.3")
            x += max(width, 0.05) + 0.03
    fig.suptitle(
        "Question words by token attribution (red: towards the target, blue: away; boxed bold: decisive words)",
        fontsize=8.5,
    )
    fig.tight_layout()
    return fig


def curves_figure(curves: pd.DataFrame, method: str) -> Figure:
    """Mean target probability along the deletion and insertion curves ``[steps + 1]``, the method's
    maps against random maps on the same targets, with 95% normal-approximation bands."""
    steps = sorted((c for c in curves.columns if c.startswith("step_")), key=lambda c: int(c.split("_")[1]))
    fractions = np.linspace(0, 1, len(steps))
    fig, axes = new_figure(1, 2, figsize=(9, 3.6), squeeze=False)
    for ax, curve in zip(axes[0], ("deletion", "insertion")):
        for source, colour, label in (("method", "tab:red", method), ("random", "0.45", "random maps")):
            values = curves[(curves["curve"] == curve) & (curves["source"] == source)][steps].to_numpy(float)
            if not len(values):
                continue
            mean = values.mean(axis=0)
            half = 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0 * mean
            auc = np.trapezoid(mean, fractions)
            ax.plot(fractions, mean, color=colour, label=f"{label} (AUC {auc:.3f})")
            ax.fill_between(fractions, mean - half, mean + half, color=colour, alpha=0.2)
        ax.set_xlabel(f"fraction of pixels {'removed' if curve == 'deletion' else 'restored'} (top of the map first)")
        ax.set_ylabel("target probability")
        ax.set_title(
            f"{curve.capitalize()} ({'lower' if curve == 'deletion' else 'higher'} AUC = more faithful)", fontsize=9
        )
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return fig


def share_figure(examples: pd.DataFrame, method: str) -> Figure:
    """The image's share of the attribution per split (box: quartiles; dot: mean; n below)."""
    fig, ax = new_figure(figsize=(8, 3.6))
    groups = [examples.loc[scenario_mask(examples, s), "image_share"].dropna().to_numpy(float) for s in SCENARIOS]
    shown = [(s, g) for s, g in zip(SCENARIOS, groups) if len(g)]
    if shown:
        ax.boxplot([g for _, g in shown], showfliers=False)
        ax.plot(range(1, len(shown) + 1), [g.mean() for _, g in shown], "o", color="tab:red", label="mean")
        ax.set_xticks(range(1, len(shown) + 1), [f"{s}\nn={len(g)}" for s, g in shown], fontsize=8)
        ax.legend(fontsize=8)
    ax.axhline(0.5, color="0.6", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("image share of |IG attribution|")
    ax.set_title(
        f"Image vs question: share of the joint attribution on the image ({method}'s run; "
        "independent of the image method)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def token_cases(outputs, examples: pd.DataFrame, n: int) -> list[dict]:
    """The token figure's cases: the first ``n`` of the qualitative panel's choice of questions
    (:func:`vqa_interp.analysis.figures.pick_cases`) that have token attributions."""
    from vqa_interp.analysis.figures import pick_cases
    from vqa_interp.data.images import load_display_image

    explain = outputs.explain
    if explain is None or explain.tokens.empty or n == 0:
        return []
    by_id = {e.question_id: e for e in outputs.examples}
    grouped = {key: group.sort_values("position") for key, group in explain.tokens.groupby(["question_id", "target"])}
    # the panel's order (confident mistakes, unsure successes first), one question per template
    # ("is there a", "what color is", ...) before any template repeats
    ordered = pick_cases(examples, len(examples))
    template = ordered["question"].str.lower().str.split().str[:2].str.join(" ")
    ordered = ordered.assign(_repeat=template.groupby(template).cumcount()).sort_values("_repeat", kind="stable")
    cases = []
    for row in ordered.itertuples():
        group = grouped.get((row.question_id, row.target))
        if group is None:
            continue
        decisive = set((explain.evidence or {}).get(int(row.question_id), ()))
        cases.append(
            {
                "image": load_display_image(by_id[row.question_id].image_path, outputs.geometry),
                "attribution": outputs.cache.load(row.map_key),
                "words": group["token"].tolist(),
                "scores": group["attribution"].to_numpy(float),
                "decisive": decisive,
                "title": f"Q {row.question_id}: {row.question}   A: {row.answer}   pred: {row.prediction} "
                f"(p={row.confidence:.2f})   target: '{row.target_answer}'",
            }
        )
        if len(cases) == n:
            break
    return cases
