"""Corpus BLEU, ROUGE-L and CIDEr-D exactly as the COCO caption evaluation (pycocoevalcap 1.2) computes them.

Every function takes already tokenised captions (space-joined tokens, e.g. from
:func:`violetv2.metrics.ptb.ptb_tokenize`): ``predictions[i]`` is the one generated caption of sample ``i``
and ``references[i]`` its reference captions. Scores are on pycocoevalcap's scale (papers print them x100).

- BLEU-1..4: corpus-level (clipped n-gram counts and lengths summed over the corpus), "closest" reference
  length for the brevity penalty, pycocoevalcap's 1e-15 / 1e-9 smoothing.
- ROUGE-L: per caption the LCS F-measure (beta 1.2) against the reference of best precision and the one of
  best recall, averaged over samples.
- CIDEr-D: TF-IDF n-gram (1-4) vectors with document frequencies over the reference sets of the WHOLE
  corpus (so it must be computed once over the full test set, never per batch or per rank and averaged),
  clipped similarity, Gaussian length penalty (sigma 6), x10, averaged over references and samples. As in
  pycocoevalcap the "length" in the penalty counts bigrams (length - 1).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

__all__ = ["bleu", "cider_d", "rouge_l"]

Ngrams = Counter[tuple[str, ...]]


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("caption metrics of an empty corpus are undefined")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"references[{i}] must be a non-empty list of captions, got {refs!r}")


def _ngrams(words: list[str], n: int) -> Ngrams:
    counts: Ngrams = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i : i + k])] += 1
    return counts


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1 ... BLEU-n (pycocoevalcap ``Bleu(n)``, option "closest").

    Returns:
        ``[BLEU-1, ..., BLEU-n]``.
    """
    _check(predictions, references)
    tiny, small = 1e-15, 1e-9
    guess, correct = [0] * n, [0] * n
    total_test = total_ref = 0
    for hyp, refs in zip(predictions, references):
        words = hyp.split()
        ref_lens, max_counts = [], {}
        for ref in refs:
            ref_words = ref.split()
            ref_lens.append(len(ref_words))
            for gram, c in _ngrams(ref_words, n).items():
                max_counts[gram] = max(max_counts.get(gram, 0), c)
        total_test += len(words)
        total_ref += min((abs(length - len(words)), length) for length in ref_lens)[1]
        for gram, c in _ngrams(words, n).items():
            correct[len(gram) - 1] += min(max_counts.get(gram, 0), c)
        for k in range(n):
            guess[k] += max(0, len(words) - k)
    scores, product = [], 1.0
    for k in range(n):
        product *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (total_test + tiny) / (total_ref + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(predictions: Sequence[str], references: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean ROUGE-L F-measure (pycocoevalcap ``Rouge``; tokens split on single spaces as it does)."""
    _check(predictions, references)
    total = 0.0
    for hyp, refs in zip(predictions, references):
        cand = hyp.split(" ")
        prec, rec = 0.0, 0.0
        for ref in refs:
            ref_words = ref.split(" ")
            lcs = _lcs(ref_words, cand)
            prec, rec = max(prec, lcs / len(cand)), max(rec, lcs / len(ref_words))
        if prec != 0 and rec != 0:
            total += (1 + beta**2) * prec * rec / (rec + beta**2 * prec)
    return total / len(predictions)


def _tfidf(
    counts: Ngrams, df: dict[tuple[str, ...], float], log_n: float, n: int
) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
    vec: list[dict[tuple[str, ...], float]] = [{} for _ in range(n)]
    norm, length = [0.0] * n, 0
    for gram, tf in counts.items():
        k = len(gram) - 1
        value = tf * (log_n - math.log(max(1.0, df.get(gram, 0.0))))
        vec[k][gram] = value
        norm[k] += value * value
        if k == 1:
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


def cider_d(
    predictions: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> float:
    """Corpus CIDEr-D (pycocoevalcap ``Cider``): document frequencies from ALL the references given.

    Returns:
        The mean over samples of the per-sample CIDEr-D.
    """
    _check(predictions, references)
    ref_counts = [[_ngrams(r.split(), n) for r in refs] for refs in references]
    df: dict[tuple[str, ...], float] = defaultdict(float)
    for refs in ref_counts:
        for gram in {g for counts in refs for g in counts}:
            df[gram] += 1
    log_n = math.log(float(len(references)))
    total = 0.0
    for hyp, refs in zip(predictions, ref_counts):
        vec, norm, length = _tfidf(_ngrams(hyp.split(), n), df, log_n, n)
        score = [0.0] * n
        for counts in refs:
            vec_r, norm_r, length_r = _tfidf(counts, df, log_n, n)
            penalty = math.exp(-((length - length_r) ** 2) / (2 * sigma**2))
            for k in range(n):
                val = sum(min(v, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, v in vec[k].items())
                if norm[k] != 0 and norm_r[k] != 0:
                    val /= norm[k] * norm_r[k]
                score[k] += val * penalty
        total += sum(score) / n / len(refs) * 10.0
    return total / len(predictions)
