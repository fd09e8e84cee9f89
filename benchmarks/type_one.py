"""Calibration of the verdicts: how often each test says "different" when nothing differs.

``python -m benchmarks.type_one [--replicates 1000] [--markdown benchmarks/RESULTS_TYPE1.md]``

The simulation the verdicts are built for: 30 images x 4 questions, H0 true, an effect shared by
the questions of one image (an image effect with standard deviation 1, question noise 0.3).

- paired (two methods on the same questions): the difference of a question = its image's effect +
  noise; the tool's sign-flip permutation test over images against a paired t-test and a Wilcoxon
  signed-rank test on the questions;
- two groups (correct vs wrong): a question's group follows its image (15 images in each), its
  value = its image's effect + noise; the tool's wild cluster bootstrap-t over images against
  Welch's t-test on the questions.

Reported: the share of replicates with p < 0.05 (nominal 0.05) and its binomial standard error.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.stats

from vqa_interp.analysis.verdicts import group_test, sign_flip_p


def simulate(replicates: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    images = np.repeat(np.arange(30), 4)
    hits = {
        "paired: sign-flip over images (the tool)": 0,
        "paired: t-test on questions": 0,
        "paired: Wilcoxon on questions": 0,
        "two groups: wild cluster bootstrap-t (the tool)": 0,
        "two groups: Welch's t on questions": 0,
    }
    names = list(hits)
    for _ in range(replicates):
        diff = rng.normal(0, 1, 30)[images] + rng.normal(0, 0.3, 120)
        hits[names[0]] += sign_flip_p(diff, images, n_permutations=999, rng=rng) < 0.05
        hits[names[1]] += scipy.stats.ttest_1samp(diff, 0).pvalue < 0.05
        hits[names[2]] += scipy.stats.wilcoxon(diff).pvalue < 0.05
        group = (rng.permutation(30) < 15)[images]
        y = rng.normal(0, 1, 30)[images] + rng.normal(0, 0.3, 120)
        p, _, _ = group_test(y[group], y[~group], images[group], images[~group], n_bootstrap=999, rng=rng)
        hits[names[3]] += p < 0.05
        hits[names[4]] += scipy.stats.ttest_ind(y[group], y[~group], equal_var=False).pvalue < 0.05
    return {name: count / replicates for name, count in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rates = simulate(args.replicates)
    se = np.sqrt(0.05 * 0.95 / args.replicates)
    lines = [
        f"Type-I error rate at alpha = 0.05, {args.replicates} replicates of 30 images x 4 questions with an "
        f"image-shared effect (binomial SE at 0.05: {se:.3f}; `python -m benchmarks.type_one`).",
        "",
        "| test | rate of p < 0.05 under H0 |",
        "|---|---|",
    ]
    lines += [f"| {name} | {rate:.3f} |" for name, rate in rates.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Calibration of the verdicts\n\n" + text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rates, f, indent=1)


if __name__ == "__main__":
    main()
