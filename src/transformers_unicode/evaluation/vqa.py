"""VQAv2 accuracy: answers normalised the way the official evaluation does, scored against ten annotators.

Reported VQAv2 numbers come from the official evaluation script, so a score is only comparable to them if
answers are cleaned by the same rules and counted by the same consensus formula. Both are written out here
from the published rules (Antol et al. 2015; the VQA evaluation code), with the script's quirks kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Spelt-out numbers become digits, so "two" and "2" agree.
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# The marks `_strip_punctuation` removes; periods and apostrophes have rules of their own.
PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'

# Contractions that annotators typed without their apostrophes, restored to one spelling. Each form is
# reached from the spellings that miss one apostrophe ("dont" -> "don't"; "couldnt've" and "couldn'tve" ->
# "couldn't've"), the table the official script uses, minus its entries that lowercase input never meets.
_CONTRACTED = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd
he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've
needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've
somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll
that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've
weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's who've
why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll
you're you've
""".split()


def _missing_one_apostrophe(form: str) -> list[str]:
    cuts = [i for i, c in enumerate(form) if c == "'"]
    return [form[:i] + form[i + 1 :] for i in cuts]


CONTRACTIONS = {typed: form for form in _CONTRACTED for typed in _missing_one_apostrophe(form)}

_DIGIT_COMMA = re.compile(r"\d,\d")
# A period goes unless a digit follows ("2.5" and ".5" keep theirs). The official pattern meant "not between
# digits" but its look-behind is written as a look-ahead, so this is what it does, and what scores assume.
_PERIOD = re.compile(r"\.(?!\d)")


def _strip_punctuation(answer: str) -> str:
    """Each mark is dropped when the answer writes it next to a space or holds a digit comma ("1,000" must
    not split), else replaced by a space ("black-and-white" -> "black and white"); both tests look at the
    answer as given. Then periods go unless a digit follows."""
    digit_comma = _DIGIT_COMMA.search(answer) is not None
    text = answer
    for mark in PUNCTUATION:
        dropped = digit_comma or mark + " " in answer or " " + mark in answer
        text = text.replace(mark, "" if dropped else " ")
    return _PERIOD.sub("", text)


def normalize_vqa_answer(answer: str) -> str:
    """An answer in the official VQAv2 normal form.

    Punctuation is dropped or turned into spaces (see `_strip_punctuation`: "yes, it is" -> "yes it is",
    "1,000" -> "1000", "black-and-white" -> "black and white", a final period goes); then, word by word after
    lowercasing, number words become digits, articles go and apostrophe-less contractions are restored.
    Whitespace collapses to single spaces. "Two dogs." -> "2 dogs".
    """
    text = _strip_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def vqa_accuracy(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict:
    """Official VQA accuracy: an answer is fully right when at least 3 annotators gave it.

    Per question, each of the (usually 10) human answers is left out in turn and the prediction scores
    `min(#matches among the other answers / 3, 1)`; the question's score is the mean over the left-out
    answers, and the result the mean over questions. With m of 10 annotators matching this is
    `(m * min(1, (m - 1) / 3) + (10 - m) * min(1, m / 3)) / 10`: 0, 0.3, 0.6, 0.9, 1, ... for m = 0, 1, 2, 3, 4.

    A reference given as a single string (or a list of one) counts as ten identical annotations, so the
    prediction scores 1.0 when it matches and 0.0 otherwise: plain exact match after normalisation. Both
    predictions and references are normalised with `normalize_vqa_answer`.

    Returns `{"vqa_accuracy": mean, "count": questions}`.
    """
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"Need as many predictions as references (>0); got {len(predictions)} and {len(references)}."
        )
    scores = []
    for index, (prediction, answers) in enumerate(zip(predictions, references, strict=True)):
        answers = [answers] if isinstance(answers, str) else list(answers)
        if not answers:
            raise ValueError(f"Question {index} has no reference answers.")
        if len(answers) == 1:
            answers = answers * 10
        predicted = normalize_vqa_answer(prediction)
        matches = [normalize_vqa_answer(answer) == predicted for answer in answers]
        total = sum(matches)
        scores.append(sum(min(1.0, (total - match) / 3) for match in matches) / len(matches))
    return {"vqa_accuracy": sum(scores) / len(scores), "count": len(scores)}


__all__ = ["CONTRACTIONS", "normalize_vqa_answer", "vqa_accuracy"]
