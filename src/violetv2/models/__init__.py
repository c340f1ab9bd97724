"""Plain-torch model code (no Lightning import anywhere below this package)."""

from .encoders import TextEmbeddings, VideoEncoder
from .fusion import FusionTransformer, bidirectional_mask, seq2seq_mask
from .heads import ClassifierHead, FeatureHead, MLMHead, PixelShuffleHead, VQHead, VTMHead
from .video_swin import VideoSwin
from .violet import TASK_ROWS, FusedSequence, VioletBackbone, VioletModel

__all__ = [
    "ClassifierHead",
    "TASK_ROWS",
    "FeatureHead",
    "FusedSequence",
    "FusionTransformer",
    "MLMHead",
    "PixelShuffleHead",
    "TextEmbeddings",
    "VQHead",
    "VTMHead",
    "VideoEncoder",
    "VideoSwin",
    "VioletBackbone",
    "VioletModel",
    "bidirectional_mask",
    "seq2seq_mask",
]
