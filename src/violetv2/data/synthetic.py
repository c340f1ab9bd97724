"""The synthetic video benchmark: the library's embedded default dataset (``violet synth``).

Short real H.264 mp4 clips of one coloured shape (circle / square / triangle, six colours) on a plain or
noisy background doing two things in a row (move or bounce left / right / up / down, appear, disappear,
change colour; see :mod:`violetv2.data.synthetic_render`), with annotations for every task, each written in
the on-disk layout of the real benchmark it stands in for, so the same readers parse both::

    root/
      synthetic.json                          manifest: parameters, counts, files (written last)
      clips.json                              ground truth program of every clip (not a benchmark layout)
      videos/{videoid}.mp4                    every clip, train and test; videoid ``100001_0_2`` (an MSVD-style
                                              ``<id>_<start>_<end>`` name, the one stem every layout uses)
      webvid/results_{train,val}.csv          pre-training captions, WebVid-10M layout (videos flat, not in
                                              page_dir folders: read with ``video_layout="flat"``)
      umt/ret_{train,test}.json               retrieval + captioning, UMT msrvtt_ret_train9k/test1k layout
      msrvtt_mc/MSR_MC_{train,test}.csv       5-way caption choice (one true caption), JSFusion MSR_MC layout (TSV)
      tgif_qa/{Train,Test}_action_question.csv       5-way MC (random distractors), TGIF-QA layout (TSV, CRLF)
      tgif_qa/{Train,Test}_transition_question.csv   5-way MC (order; confusable distractors), TGIF-QA layout
      tgif_qa/{Train,Test}_frameqa_question.csv      open QA, TGIF-QA FrameQA layout
      msvd_qa/{train,test}_qa.json + youtube_mapping.txt   open QA, MSVD-QA (xudejing) layout
      fib/LSMDC16_FIB_{train,test}.csv        fill-in-the-blank, JSFusion LSMDC16_FIB DataFrame layout (TSV)
      tokenizer/                              WordPiece vocabulary of all the text (AutoTokenizer loads it)

Test clips are drawn from their own random streams; every task's test split uses only test clips.
The fill-in-the-blank layout is the one JSFusion's loader reads (tab separated, header ``key vid_key
blank_sentence answer``, pandas' LF); the official LSMDC / MovieFIB release could not be obtained to compare.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from violetv2.config import VioletConfig
from violetv2.data import synthetic_text as text
from violetv2.data.synthetic_render import ClipSpec, render_to_files, sample_clip, video_codec

__all__ = ["SyntheticPaths", "generate", "build_tokenizer", "wordpiece_vocab", "main", "FORMAT_VERSION"]

FORMAT_VERSION = 4  # 3: videos encoded without x264 mbtree (reproducible); 4: TGIF-Action distractors random;
# older benchmarks regenerate
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TGIF_MC_HEADER = ["gif_name", "question", "a1", "a2", "a3", "a4", "a5", "answer", "vid_id", "key"]
TGIF_FRAMEQA_HEADER = ["gif_name", "question", "answer", "type", "vid_id", "key", "description"]
WEBVID_HEADER = ["videoid", "contentUrl", "duration", "page_dir", "name"]
FIB_HEADER = ["key", "vid_key", "blank_sentence", "answer"]
MSR_MC_HEADER = ["key", "vid_key", "video_id", "a1", "a2", "a3", "a4", "a5", "answer"]
PROMPT_WORDS = ("answer", ":", "option", *(str(i) for i in range(10)))
"""Words of the downstream prompts (``answer :``, ``option i:``): each must be one word piece, so the
``qa`` / ``mc_prompt`` layouts have the release's lengths and option digits are predictable."""
FIRST_VIDEO_ID = 100000
LAYOUT = {
    "manifest": "synthetic.json",
    "clips": "clips.json",
    "videos": "videos",
    "webvid_train": "webvid/results_train.csv",
    "webvid_val": "webvid/results_val.csv",
    "ret_train": "umt/ret_train.json",
    "ret_test": "umt/ret_test.json",
    "mc_train": "msrvtt_mc/MSR_MC_train.csv",
    "mc_test": "msrvtt_mc/MSR_MC_test.csv",
    "action_train": "tgif_qa/Train_action_question.csv",
    "action_test": "tgif_qa/Test_action_question.csv",
    "transition_train": "tgif_qa/Train_transition_question.csv",
    "transition_test": "tgif_qa/Test_transition_question.csv",
    "frameqa_train": "tgif_qa/Train_frameqa_question.csv",
    "frameqa_test": "tgif_qa/Test_frameqa_question.csv",
    "msvdqa_train": "msvd_qa/train_qa.json",
    "msvdqa_test": "msvd_qa/test_qa.json",
    "msvd_mapping": "msvd_qa/youtube_mapping.txt",
    "fib_train": "fib/LSMDC16_FIB_train.csv",
    "fib_test": "fib/LSMDC16_FIB_test.csv",
    "tokenizer": "tokenizer",
}


@dataclass(frozen=True)
class SyntheticPaths:
    """Where :func:`generate` wrote each part of the benchmark (see the module docstring for layouts)."""

    root: Path
    manifest: Path
    clips: Path
    videos: Path
    webvid_train: Path
    webvid_val: Path
    ret_train: Path
    ret_test: Path
    mc_train: Path
    mc_test: Path
    action_train: Path
    action_test: Path
    transition_train: Path
    transition_test: Path
    frameqa_train: Path
    frameqa_test: Path
    msvdqa_train: Path
    msvdqa_test: Path
    msvd_mapping: Path
    fib_train: Path
    fib_test: Path
    tokenizer: Path

    @classmethod
    def at(cls, root: str | Path) -> SyntheticPaths:
        """The paths of a benchmark under ``root`` (whether or not it exists yet)."""
        root = Path(root)
        return cls(root=root, **{key: root / rel for key, rel in LAYOUT.items()})

    def files(self) -> dict[str, Path]:
        """Every path but the root, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "root"}


@dataclass(frozen=True)
class _Clip:
    number: int  # 1-based over train then test (MSVD-QA video_id, TGIF key)
    split: str
    index: int  # within the split
    spec: ClipSpec
    seconds: int

    @property
    def videoid(self) -> str:
        """File stem shared by every layout, shaped like an MSVD clip name ``<id>_<start>_<end>``."""
        return f"{FIRST_VIDEO_ID + self.number}_0_{self.seconds}"

    @property
    def video(self) -> str:
        return f"{self.videoid}.mp4"


def _sample_clips(num_train: int, num_test: int, seed: int, seconds: float) -> list[_Clip]:
    clips, whole = [], max(1, int(round(seconds)))
    for code, (split, count) in enumerate((("train", num_train), ("test", num_test))):
        for i in range(count):
            spec = sample_clip(np.random.default_rng([seed, code, i]))
            clips.append(_Clip(len(clips) + 1, split, i, spec, whole))
    return clips


def _text_rng(seed: int, clip: _Clip, task: int) -> np.random.Generator:
    """One independent text stream per (clip, task): adding a task never changes another's text."""
    return np.random.default_rng([seed, 0 if clip.split == "train" else 1, clip.index, 1 + task])


# ----------------------------------------------------------------------------------------------- writers
def _write_tsv(path: Path, header: list[str], rows: list[list[object]], lineterminator: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator=lineterminator)
        writer.writerow(header)
        writer.writerows(rows)


def _write_text(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(content)


def _iso_duration(seconds: float) -> str:
    total = int(round(seconds))
    return f"PT{total // 3600:02d}H{total % 3600 // 60:02d}M{total % 60:02d}S"


def _write_webvid(path: Path, clips: list[_Clip], seed: int, seconds: float) -> list[str]:
    """WebVid-10M results CSV: comma separated, RFC-4180 minimal quoting, LF, sentence-case names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(WEBVID_HEADER)
        for clip in clips:
            line = text.caption(clip.spec, _text_rng(seed, clip, 0))
            name = f"{line[0].upper()}{line[1:]}."
            page = (clip.number - 1) // 50 * 50
            page_dir = f"{page + 1:06d}_{page + 50:06d}"
            writer.writerow([clip.videoid, f"videos/{clip.video}", _iso_duration(seconds), page_dir, name])
            names.append(name)
    return names


def _write_umt(path: Path, clips: list[_Clip], seed: int, duration: float, train: bool) -> list[str]:
    """UMT msrvtt_ret_{train9k,test1k}.json: a JSON array, default separators, no trailing newline."""
    entries, captions = [], []
    for clip in clips:
        rng = _text_rng(seed, clip, 1)
        lines = list(dict.fromkeys(text.caption(clip.spec, rng) for _ in range(5))) if train else []
        lines = lines or [text.caption(clip.spec, rng)]
        captions += lines
        entries.append({"video": clip.video, "caption": lines if train else lines[0], "duration": duration})
    _write_text(path, json.dumps(entries))
    return captions


def _write_msrvtt_mc(path: Path, clips: list[_Clip], seed: int, counter: int) -> list[str]:
    """MSRVTT multiple choice (JSFusion ``MSR_MC_test.csv``): TSV with header, LF; the options are five
    captions, the clip's own one and four of other clips of the split showing another shape or colour."""
    rows, texts = [], []
    for n, clip in enumerate(clips):
        rng = _text_rng(seed, clip, 7)
        others = [c for c in clips if (c.spec.shape, c.spec.colour) != (clip.spec.shape, clip.spec.colour)]
        others = others or [c for c in clips if c is not clip] or [clip]
        order_others = list(rng.permutation(len(others)))
        picks = [others[int(order_others[k % len(others)])] for k in range(4)]
        options = [text.caption(c.spec, rng) for c in [clip, *picks]]
        order = rng.permutation(5)
        label = int(np.argmax(order == 0))
        number = FIRST_VIDEO_ID + clip.number
        rows.append([f"MC{counter + n}", f"msr{number}", clip.videoid, *[options[i] for i in order], label])
        texts += options
    _write_tsv(path, MSR_MC_HEADER, rows, "\n")
    return texts


def _write_tgif_mc(path: Path, clips: list[_Clip], seed: int, kind: str, counter: int) -> list[str]:
    """TGIF-QA Action / Transition: TSV with header, CRLF, answer = 0-based option index."""
    make = text.mc_action if kind == "action" else text.mc_transition
    prefix, task = ("ACTION", 2) if kind == "action" else ("TRANS", 3)
    rows, texts = [], []
    for n, clip in enumerate(clips):
        question, options, label = make(clip.spec, _text_rng(seed, clip, task))
        rows.append([clip.videoid, question, *options, label, f"{prefix}{counter + n}", clip.number])
        texts += [question, *options]
    _write_tsv(path, TGIF_MC_HEADER, rows, "\r\n")
    return texts


def _write_frameqa(path: Path, clips: list[_Clip], seed: int, counter: int) -> tuple[list[str], int]:
    """TGIF-QA FrameQA: TSV with header, CRLF; type 0 object / 2 colour / 3 location."""
    rows, texts = [], []
    for clip in clips:
        rng = _text_rng(seed, clip, 4)
        description = f"{text.caption(clip.spec, rng, commas=False)} ."
        for question, answer, qtype in text.frameqa_items(clip.spec, rng):
            vid_id = f"FRAMEQA{counter + len(rows)}"
            rows.append([clip.videoid, question, answer, qtype, vid_id, clip.number, description])
            texts += [question, answer]
        texts.append(description)
    _write_tsv(path, TGIF_FRAMEQA_HEADER, rows, "\r\n")
    return texts, counter + len(rows)


def _write_msvdqa(path: Path, clips: list[_Clip], seed: int, first_id: int) -> tuple[list[str], int]:
    """MSVD-QA (xudejing): compact JSON array of {answer, id, question, video_id}, no trailing newline."""
    entries, texts = [], []
    for clip in clips:
        for question, answer in text.msvdqa_items(clip.spec, _text_rng(seed, clip, 5)):
            item = {"answer": answer, "id": first_id + len(entries), "question": question}
            entries.append({**item, "video_id": clip.number})
            texts += [question, answer]
    _write_text(path, json.dumps(entries, separators=(",", ":")))
    return texts, first_id + len(entries)


def _write_mapping(path: Path, clips: list[_Clip]) -> None:
    """MSVD youtube_mapping.txt: ``<name> vid<N>``, space separated, CRLF, no newline after the last line."""
    _write_text(path, "\r\n".join(f"{clip.videoid} vid{clip.number}" for clip in clips))


def _write_fib(path: Path, clips: list[_Clip], seed: int, counter: int) -> tuple[list[str], int]:
    """Fill-in-the-blank in the JSFusion LSMDC16_FIB DataFrame layout: TSV, header, LF, one ``_____``."""
    rows = [
        [f"FIB{counter + n}", c.videoid, *text.fib_item(c.spec, _text_rng(seed, c, 6))]
        for n, c in enumerate(clips)
    ]
    _write_tsv(path, FIB_HEADER, rows, "\n")
    return [t for row in rows for t in row[2:]], counter + len(rows)


def _write_clips(path: Path, clips: list[_Clip]) -> None:
    entries = [{"video": c.video, "split": c.split, **asdict(c.spec)} for c in clips]
    _write_text(path, json.dumps(entries, indent=1))


def _write_annotations(paths: SyntheticPaths, clips: list[_Clip], seed: int, duration: float) -> list[str]:
    """Every annotation file; returns all the text written (the tokenizer's training corpus)."""
    split = {s: [c for c in clips if c.split == s] for s in ("train", "test")}
    train, test, n_train = split["train"], split["test"], len(split["train"])
    out = _write_webvid(paths.webvid_train, train, seed, duration)
    out += _write_webvid(paths.webvid_val, test, seed, duration)
    out += _write_umt(paths.ret_train, train, seed, duration, train=True)
    out += _write_umt(paths.ret_test, test, seed, duration, train=False)
    out += _write_msrvtt_mc(paths.mc_train, train, seed, 0)
    out += _write_msrvtt_mc(paths.mc_test, test, seed, n_train)
    for kind in ("action", "transition"):
        out += _write_tgif_mc(getattr(paths, f"{kind}_train"), train, seed, kind, 0)
        out += _write_tgif_mc(getattr(paths, f"{kind}_test"), test, seed, kind, n_train)
    for kind, write in (("frameqa", _write_frameqa), ("msvdqa", _write_msvdqa), ("fib", _write_fib)):
        texts, counter = write(getattr(paths, f"{kind}_train"), train, seed, 0)
        out += texts + write(getattr(paths, f"{kind}_test"), test, seed, counter)[0]
    _write_mapping(paths.msvd_mapping, clips)
    _write_clips(paths.clips, clips)
    return out


# ------------------------------------------------------------------------------------------------ tokenizer
def wordpiece_vocab(corpus: Sequence[str], max_vocab: int) -> list[str]:
    """A deterministic WordPiece vocabulary: special tokens, every character (bare and ``##``), then whole
    words by falling frequency (ties alphabetical) while they fit.

    The ``tokenizers`` WordPiece trainer breaks ties between equally frequent merges differently in every
    process (five runs gave five different vocabularies), so the benchmark builds its own from the same BERT
    normaliser and pre-tokenizer. Words left out still encode, as characters.
    """
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer, pre_tokenizer = BertNormalizer(lowercase=True), BertPreTokenizer()
    counts: Counter[str] = Counter()
    for line in corpus:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    alphabet = sorted({char for word in counts for char in word})
    vocab = [*SPECIAL_TOKENS, *alphabet, *(f"##{char}" for char in alphabet)]
    if len(vocab) > max_vocab:
        raise RuntimeError(
            f"vocabulary: {len(vocab)} special tokens and characters exceed the limit {max_vocab}"
        )
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    return vocab + words[: max_vocab - len(vocab)]


def build_tokenizer(
    corpus: Sequence[str], out_dir: str | Path, answers: Sequence[str] = text.ANSWER_WORDS, max_vocab: int = 0
) -> int:
    """Build a lower-case BERT WordPiece vocabulary of ``corpus`` and save it as a Hugging Face tokenizer.

    Args:
        corpus: Every caption, question, option and answer of the benchmark.
        out_dir: Directory written with ``save_pretrained`` (``AutoTokenizer.from_pretrained`` loads it).
        answers: Words that must each be a single word piece (answers predicted by the MLM head).
        max_vocab: Largest allowed vocabulary; 0 means the ``tiny`` preset's ``vocab_size``.

    Returns:
        The vocabulary size.

    Raises:
        RuntimeError: The vocabulary is too large, ``[PAD]`` is not id 0, or an answer is split.
    """
    from transformers import BertTokenizerFast

    max_vocab = max_vocab or VioletConfig.from_name("tiny").vocab_size
    out_dir = Path(out_dir)
    _write_text(out_dir / "vocab.txt", "".join(f"{token}\n" for token in wordpiece_vocab(corpus, max_vocab)))
    tokenizer = BertTokenizerFast(vocab=str(out_dir / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(out_dir))
    size = len(tokenizer)
    if size > max_vocab:
        raise RuntimeError(f"{out_dir}: vocabulary has {size} entries, more than the limit {max_vocab}")
    if tokenizer.pad_token_id != 0:
        raise RuntimeError(f"{out_dir}: [PAD] has id {tokenizer.pad_token_id}, expected 0")
    split = {a: pieces for a in answers if (pieces := tokenizer.tokenize(a)) != [a]}
    if split:
        raise RuntimeError(
            f"{out_dir}: answers not single word pieces (vocabulary limit {max_vocab}): {split}"
        )
    return size


# ------------------------------------------------------------------------------------------------- videos
def _render_videos(
    paths: SyntheticPaths, clips: list[_Clip], size: int, num_frames: int, fps: int, workers: int
) -> str:
    codec = video_codec()
    paths.videos.mkdir(parents=True, exist_ok=True)
    jobs = [(c.spec, str(paths.videos / c.video)) for c in clips]
    chunk = max(1, min(32, len(jobs) // max(4 * workers, 1)))
    chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    with tqdm(total=len(jobs), desc="synthetic clips", unit="clip") as bar:
        if workers <= 1:
            for part in chunks:
                bar.update(render_to_files(part, size, num_frames, fps, codec))
            return codec
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(render_to_files, part, size, num_frames, fps, codec) for part in chunks]
            for future in as_completed(futures):
                bar.update(future.result())
    return codec


# ----------------------------------------------------------------------------------------------- generate
def _params(num_train: int, num_test: int, size: int, seconds: float, fps: int, seed: int) -> dict:
    return {
        "version": FORMAT_VERSION,
        "num_train": num_train,
        "num_test": num_test,
        "size": size,
        "seconds": float(seconds),
        "fps": fps,
        "seed": seed,
    }


def _check_params(params: dict) -> int:
    """Validate the parameters; returns the frame count."""
    num_frames = int(round(params["seconds"] * params["fps"]))
    checks: list[tuple[bool, str]] = [
        (params["num_train"] >= 1 and params["num_test"] >= 1, "num_train and num_test must be >= 1"),
        (params["num_train"] + params["num_test"] < 900_000, "num_train + num_test must be < 900000"),
        (params["size"] >= 32 and params["size"] % 2 == 0, "size must be even and >= 32"),
        (params["fps"] >= 1 and num_frames >= 4, "seconds * fps must give at least 4 frames"),
        (params["seed"] >= 0, "seed must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"synthetic benchmark: {message} (got {params})")
    return num_frames


def _is_complete(paths: SyntheticPaths, params: dict) -> bool:
    if not paths.manifest.is_file():
        return False
    try:
        manifest = json.loads(paths.manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return manifest.get("params") == params and all(p.exists() for p in paths.files().values())


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def generate(
    root: str | Path,
    num_train: int = 2000,
    num_test: int = 200,
    size: int = 64,
    seconds: float = 2.0,
    fps: int = 8,
    seed: int = 0,
    workers: int | None = None,
) -> SyntheticPaths:
    """Write the synthetic benchmark under ``root`` (a no-op if the same one is already there).

    Args:
        root: Output directory (created).
        num_train: Training clips (every task's train split uses all of them).
        num_test: Held-out clips, drawn from their own random streams.
        size: Frame side in pixels (even, >= 32; 64 by default, up to 112 is sensible).
        seconds: Clip length in seconds.
        fps: Frames per second (``round(seconds * fps)`` frames per clip, at least 4).
        seed: Seed of everything: the same seed gives the same annotations and pixels.
        workers: Processes rendering clips; default ``min(2, cpu count)``; <= 1 renders in this process.

    Returns:
        The written paths.
    """
    paths = SyntheticPaths.at(root)
    params = _params(num_train, num_test, size, seconds, fps, seed)
    num_frames = _check_params(params)
    if _is_complete(paths, params):
        return paths
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.manifest.unlink(missing_ok=True)
    duration = round(num_frames / fps, 2)
    clips = _sample_clips(num_train, num_test, seed, duration)
    corpus = _write_annotations(paths, clips, seed, duration) + [" ".join(PROMPT_WORDS)] * 10
    vocab_size = build_tokenizer(corpus, paths.tokenizer, answers=(*text.ANSWER_WORDS, *PROMPT_WORDS))
    workers = _default_workers() if workers is None else workers
    codec = _render_videos(paths, clips, size, num_frames, fps, workers)
    counts = {"train": num_train, "test": num_test, "frames": num_frames, "vocab_size": vocab_size}
    manifest = {"params": params, "counts": counts, "codec": codec}
    manifest["files"] = {k: str(p.relative_to(paths.root)) for k, p in paths.files().items()}
    _write_text(paths.manifest, json.dumps(manifest, indent=1))
    return paths


def main(argv: list[str] | None = None) -> SyntheticPaths:
    """Command line of :func:`generate` (``violet synth``)."""
    parser = argparse.ArgumentParser(
        prog="violet synth",
        description="Write the synthetic video benchmark (mp4 clips + annotations in the layouts of WebVid, "
        "MSRVTT/UMT, TGIF-QA, MSVD-QA, fill-in-the-blank + a WordPiece tokenizer). Re-running with the same "
        "parameters on a complete benchmark does nothing.",
    )
    parser.add_argument("root", type=Path, help="output directory")
    parser.add_argument("--num-train", type=int, default=2000, help="training clips (default 2000)")
    parser.add_argument("--num-test", type=int, default=200, help="held-out test clips (default 200)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels, even, >= 32 (default 64)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds (default 2)")
    parser.add_argument("--fps", type=int, default=8, help="frames per second (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--workers", type=int, default=_default_workers(), help="rendering processes (default min(2, cpus))"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = generate(**{k: v for k, v in vars(args).items()})
    print(f"synthetic benchmark at {paths.root} ({time.perf_counter() - start:.1f} s)")
    return paths


if __name__ == "__main__":
    main()
