"""The class-conditional judge's own accuracy on real renders (issue 14 §4): is it a judge worth believing?

`GroupJudge` (logistic regression on 32 x 32 pixels) fit on the 3,570 training renders of OpenMoji and scored
on the 374 held-out ones, beside the majority baseline. The evaluation suite reports the same figure with
every class-conditional verdict; this prints it without a model.

    . .venv/bin/activate
    python benchmarks/group_judge.py            # ~30 s on 2 cores
"""

from __future__ import annotations

from collections import Counter

from transformers_unicode import load_openmoji
from transformers_unicode.evaluation.judge import GroupJudge


def main() -> None:
    train, test = load_openmoji("train", size=64), load_openmoji("test", size=64)
    judge = GroupJudge().fit(list(train["image"]), list(train["group"]))
    scores = judge.score(list(test["image"]), list(test["group"]))
    majority = Counter(test["group"]).most_common(1)[0][1] / len(test)
    print(
        f"judge on {scores['count']} held-out renders: accuracy {scores['accuracy']:.1%}, "
        f"balanced {scores['balanced_accuracy']:.1%}; majority baseline {majority:.1%}"
    )


if __name__ == "__main__":
    main()
