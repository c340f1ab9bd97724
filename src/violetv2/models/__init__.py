"""Plain-torch model code (no Lightning import anywhere below this package)."""

from .encoders import TextEmbeddings, VideoEncoder
from .fusion import FusionTransformer, bidirectional_mask, seq2seq_mask
from .heads import FeatureHead, MLMHead, PixelShuffleHead, VQHead, VTMHead
from .video_swin import VideoSwin
from .violet import FusedSequence, VioletBackbone, VioletModel

__all__ = [
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
