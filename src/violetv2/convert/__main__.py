"""``violet convert`` / ``python -m violetv2.convert``: foreign checkpoint -> violetv2 checkpoint.

The output is a Lightning-style ``.ckpt`` (``--format checkpoint``) or a ``save_pretrained`` directory
(``--format pretrained``; the default when the output has no ``.ckpt`` / ``.pt`` suffix or is a directory)
that ``VioletModule.from_pretrained`` and ``violet fit --model.init_checkpoint DIR`` read.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import VioletConfig
from ..models.violet import VioletModel
from . import (
    ConversionError,
    detect_source,
    from_release,
    load_bert_into,
    load_video_swin_into,
    read_state_dict,
    save_checkpoint,
)

SOURCES = ("auto", "release", "v1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="violet convert",
        description=(
            "Convert a VIOLETv2 / VIOLET v1 release checkpoint into a violetv2 checkpoint that "
            "VioletModule.load_from_checkpoint restores. Optionally initialise parts from official Video Swin "
            "and Hugging Face BERT weights instead (for a fresh pre-training start)."
        ),
    )
    p.add_argument("source", nargs="?", help="release / v1 checkpoint (.pth, .pt, .bin or .safetensors)")
    p.add_argument("output", help="where to write: a .ckpt file, or a directory (see --format)")
    p.add_argument(
        "--format",
        choices=("auto", "checkpoint", "pretrained"),
        default="auto",
        help="checkpoint: a .ckpt for load_from_checkpoint; pretrained: a from_pretrained directory "
        "(config.json + model.safetensors + tokenizer); auto: pretrained unless OUTPUT ends in .ckpt/.pt",
    )
    add_pretrained_arguments(p)
    p.add_argument(
        "--preset",
        default=None,
        help="architecture preset (default: detected from a release file; violetv2-base for --video-swin/--bert)",
    )
    p.add_argument("--video-swin", help="official Video Swin checkpoint to initialise the video encoder")
    p.add_argument(
        "--bert", help="BERT name / local directory / state dict for text embeddings + fusion + MLM"
    )
    p.add_argument(
        "--mvm-heads", nargs="*", default=["sif"], help="MVM heads of a fresh model (default: sif)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.source:
            sd, name = read_state_dict(args.source)
            kind = detect_source(sd)
            if kind != "release":
                raise ConversionError(
                    f"{name} looks like a {kind} checkpoint; pass it as --video-swin / --bert"
                )
            config = VioletConfig.from_name(args.preset) if args.preset else None
            model = from_release(sd, config=config)
        elif args.video_swin or args.bert:
            model = VioletModel(
                VioletConfig.from_name(args.preset or "violetv2-base"), mvm=tuple(args.mvm_heads)
            )
            if args.video_swin:
                load_video_swin_into(model, args.video_swin)
            if args.bert:
                load_bert_into(model, args.bert)
        else:
            raise ConversionError("give a release checkpoint, or --video-swin and/or --bert")
    except (ConversionError, FileNotFoundError) as err:
        print(f"error: {err}")
        return 2
    if _wants_directory(args):
        try:
            path = save_as_pretrained(model, args, source=args.source or "fresh model")
        except (ValueError, OSError) as err:
            print(f"error: {err}")
            return 2
    else:
        path = save_checkpoint(model, args.output)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {path} ({model.cfg.name}, {n:,} parameters, heads: vtm={model.vtm_head is not None}, "
        f"mlm={model.mlm_head is not None}, mvm={list(model.mvm_heads)})"
    )
    return 0


def add_pretrained_arguments(p: argparse.ArgumentParser) -> None:
    """Options of a ``save_pretrained`` output: task class and the preprocessing recorded with it."""
    from ..inference.pretrained import TASKS

    g = p.add_argument_group("pretrained directory (--format pretrained)")
    g.add_argument("--task", choices=sorted(TASKS), help="task module to save as (default: from the heads)")
    g.add_argument("--num-frames", type=int, help="frames per clip (default: the preset's)")
    g.add_argument("--image-size", type=int, help="frame side in pixels (default: the preset's)")
    g.add_argument(
        "--transform", choices=("center_crop", "pad_square"), help="centre crop, or TGIF pad-to-square"
    )
    g.add_argument("--sampling", choices=("release", "segments"), help="frame sampling rule")
    g.add_argument(
        "--num-clips", type=lambda s: s if s == "all" else int(s), help="clips per video at test time, or all"
    )
    g.add_argument("--max-text-len", type=int, help="text length L of the task's layout")
    g.add_argument("--tokenizer", help="tokenizer directory or name saved with the model")


def preprocessing_updates(args: argparse.Namespace) -> dict:
    """The preprocessing fields given on the command line."""
    names = ("num_frames", "image_size", "transform", "sampling", "num_clips", "max_text_len", "tokenizer")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _wants_directory(args: argparse.Namespace) -> bool:
    if args.format != "auto":
        return args.format == "pretrained"
    out = Path(args.output)
    return out.is_dir() or out.suffix not in (".ckpt", ".pt", ".pth")


def save_as_pretrained(model: VioletModel, args: argparse.Namespace, source: str) -> Path:
    """Wrap ``model`` in its task module and write it with ``save_pretrained``."""
    import dataclasses

    from ..inference.pretrained import wrap_model

    module = wrap_model(model, args.task, tokenizer=args.tokenizer, source=source)
    module.preprocessing = dataclasses.replace(module.preprocessing, **preprocessing_updates(args))
    return module.save_pretrained(args.output)


if __name__ == "__main__":
    raise SystemExit(main())
