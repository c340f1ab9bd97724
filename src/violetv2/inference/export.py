"""``violet export CKPT DIR``: a Lightning checkpoint (or a release file) -> a ``from_pretrained`` directory."""

from __future__ import annotations

import argparse
import dataclasses
import logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``violet export`` command line."""
    from ..convert.__main__ import add_pretrained_arguments

    p = argparse.ArgumentParser(
        prog="violet export",
        description=(
            "Write a checkpoint saved by any violetv2 task (a Lightning .ckpt), or a public VIOLETv2 / VIOLET v1 "
            "release file, as a self-contained directory in the Hugging Face Hub layout: config.json (task class, "
            "hyperparameters, preprocessing), model.safetensors and the tokenizer. Load it with "
            "VioletModule.from_pretrained(DIR) or fine-tune from it with violet fit --model.init_checkpoint DIR."
        ),
    )
    p.add_argument("checkpoint", help="a .ckpt saved by violetv2, or a release / v1 file")
    p.add_argument("output", help="output directory")
    add_pretrained_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``violet export``."""
    from ..convert import ConversionError
    from ..convert.__main__ import preprocessing_updates
    from ..tasks.base import VioletModule

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        module = VioletModule.from_pretrained(args.checkpoint, task=args.task)
        updates = preprocessing_updates(args)
        if updates:
            module.preprocessing = dataclasses.replace(module.preprocessing, **updates)
        path = module.save_pretrained(args.output)
    except (ConversionError, FileNotFoundError, ValueError, TypeError) as err:
        print(f"error: {err}")
        return 2
    pre = module.preprocessing
    print(
        f"wrote {path} ({type(module).__name__}, {module.cfg.name}; {pre.num_frames} frames of "
        f"{pre.image_size} px, {pre.transform}; text length {pre.max_text_len}; tokenizer {pre.tokenizer})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
