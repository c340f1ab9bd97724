"""``violet convert`` / ``python -m violetv2.convert``: foreign checkpoint -> violetv2 checkpoint."""

from __future__ import annotations

import argparse
import logging

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
    p.add_argument("output", help="where to write the violetv2 checkpoint (.ckpt)")
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
    path = save_checkpoint(model, args.output)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {path} ({model.cfg.name}, {n:,} parameters, heads: vtm={model.vtm_head is not None}, "
        f"mlm={model.mlm_head is not None}, mvm={list(model.mvm_heads)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
