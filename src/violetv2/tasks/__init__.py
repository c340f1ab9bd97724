"""LightningModules: the :class:`VioletModule` base, pre-training and one module per downstream formulation.

- :class:`PretrainModule`: VTM + MLM + MVM pre-training.
- :class:`RetrievalModule`: text-video retrieval (MSRVTT, DiDeMo, LSMDC).
- :class:`MultipleChoiceModule`: multiple choice with the VTM head (MSRVTT-MC, LSMDC-MC).
- :class:`PromptChoiceModule`: options in the prompt, MLM head at the ``[MASK]`` (TGIF-Action / Transition).
- :class:`OpenQAModule`: open-ended QA and fill-in-the-blank (TGIF-Frame, MSRVTT-QA, MSVD-QA, LSMDC-FiB).
- :class:`CaptioningModule`: seq2seq captioning (MSRVTT, MSVD).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CaptioningModule": "captioning",
    "MultipleChoiceModule": "multiple_choice",
    "OpenQAModule": "qa",
    "PretrainModule": "pretrain",
    "PromptChoiceModule": "multiple_choice",
    "RetrievalModule": "retrieval",
    "VioletModule": "base",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    # Lazy: importing a submodule (e.g. ``violetv2.tasks.losses`` from ``violetv2.mvm``) must not import every
    # task module, which import ``violetv2.mvm`` themselves (a cycle) and Lightning.
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
