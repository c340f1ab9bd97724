"""LightningModules: the :class:`VioletModule` base, pre-training and one module per downstream formulation.

- :class:`PretrainModule`: VTM + MLM + MVM pre-training.
- :class:`RetrievalModule`: text-video retrieval (MSRVTT, DiDeMo, LSMDC).
- :class:`MultipleChoiceModule`: multiple choice with the VTM head (MSRVTT-MC, LSMDC-MC).
- :class:`PromptChoiceModule`: options in the prompt, MLM head at the ``[MASK]`` (TGIF-Action / Transition).
- :class:`OpenQAModule`: open-ended QA and fill-in-the-blank (TGIF-Frame, MSRVTT-QA, MSVD-QA, LSMDC-FiB).
- :class:`CaptioningModule`: seq2seq captioning (MSRVTT, MSVD).
"""

from .base import VioletModule
from .captioning import CaptioningModule
from .multiple_choice import MultipleChoiceModule, PromptChoiceModule
from .pretrain import PretrainModule
from .qa import OpenQAModule
from .retrieval import RetrievalModule

__all__ = [
    "CaptioningModule",
    "MultipleChoiceModule",
    "OpenQAModule",
    "PretrainModule",
    "PromptChoiceModule",
    "RetrievalModule",
    "VioletModule",
]
