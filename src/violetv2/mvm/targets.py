"""The eight masked-visual-modeling targets behind one interface, plus a weighted container.

Every target is a small plain-Python class (not an ``nn.Module``: a frozen teacher it holds can never become
a registered submodule of the LightningModule, so it is never in the optimizer or in a checkpoint):

- ``build_head(cfg)`` -> a trainable ``nn.Module`` mapping fused video patch tokens ``[b, t, gh*gw, d]`` to a
  prediction shaped like the target (the module that owns the heads registers them);
- ``setup(device)`` loads the teacher (``from_pretrained(name_or_local_dir)``) and moves it; ``compute`` calls
  it lazily when needed;
- ``compute(video)`` -> the target, under ``torch.no_grad()``, from the UNMASKED ImageNet-normalised clip
  ``[b, t, 3, h, w]`` on the video's device;
- ``loss(pred, target, mask, valid=None)`` -> scalar, on masked positions only (patch mask ``[b, t, gh, gw]``,
  True = masked, expanded to the target's resolution), optionally only for ``valid`` ``[b]`` clips, scaled as
  the target's ``loss_scale`` says (below);
- ``metrics(pred, target, mask, valid=None)`` -> extra logged numbers (VQ: masked-token accuracy).

| name | target | head | loss |
|---|---|---|---|
| pixel | normalised RGB ``[b, t, 3, h, w]`` (optionally per-patch mean/var normalised) | PixelShuffle(d, 3, 32) | L1 |
| hog | MaskFeat HOG ``[b, t, 27, h/8, w/8]`` / skimage visualisation ``[b, t, 1, h, w]`` | PixelShuffle | MSE / L1 |
| depth | DPT relative inverse depth ``[b, t, 1, h, w]``, per-frame standardised | PixelShuffle(d, 1, 32) | L1 |
| flow | optical flow of frame pairs ``[b, t-1, 2, h, w]`` | PixelShuffle(2d, 2, 32) on pairs | L1 |
| vq | dVAE codes ``[b, t, h/8, w/8]`` (long) | VQHead(d, 4) | CE |
| sif | Swin last stage before LayerNorm ``[b, t, gh*gw, 1024]`` | FeatureHead(d, 1024) | L1 |
| clip | CLIP ViT patch tokens ``[b, t, gh*gw, 768]`` | FeatureHead(d, 768) | L1 |
| vidswin | Video Swin features ``[b, t, gh*gw, 1024]`` | FeatureHead(d, 1024) | L1 |

Loss scale (``loss_scale``, set for all targets by :class:`MVMTargets` / :func:`build_targets`):
``"published"`` (default) reduces exactly as the public VIOLETv2 code (``Agent_Pretrain.calc_mvm_loss``;
reference values in ``shared/reference/parity_losses``), ``"mean"`` is a plain mean over the masked elements:

| target | published reduction (L1 unless said) | published / mean |
|---|---|---|
| pixel | masked-element mean / 3 (the 3 channels) | 1/3 |
| hog | mean over masked elements (the release's picture: masked pixels) | 1 |
| depth | mean over masked pixels / 3 | 1/3 |
| flow | masked-element mean / 2 (the 2 flow components) | 1/2 |
| vq | cross-entropy mean over masked cells | 1 |
| sif, clip, vidswin | L1 summed over the C channels of each masked patch / (patches + 1e-5) / 3 | C/3 (341.33 for 1024) |

How the training step gets the targets (the pre-training module's side)::

    self.mvm_targets = build_targets({"sif": 1.0, "hog": 1.0})     # plain attribute: not registered
    self.mvm_heads = self.mvm_targets.build_heads(cfg)              # nn.ModuleDict: trained and saved
    ...
    targets = self.mvm_targets.compute(batch.video)                 # no_grad, unmasked clip
    preds = self.mvm_targets.predict(self.mvm_heads, patch_tokens)
    out = self.mvm_targets.losses(preds, targets, patch_mask)       # {"loss", "mvm_sif", "mvm_vq_acc", ...}

:class:`violetv2.callbacks.teachers.MVMTeacherCallback` builds the teachers in ``setup``, keeps them on the
module's device and in ``eval()``, and keeps them out of checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from violetv2.config import VioletConfig
from violetv2.models.heads import FeatureHead, PixelShuffleHead, VQHead
from violetv2.mvm import hog as hog_ops
from violetv2.mvm.teachers import (
    CLIP_MEAN,
    CLIP_STD,
    denormalize,
    freeze,
    load_hf_teacher,
    load_raft,
    perceiver_flow,
    raft_flow,
    read_state_dict,
    renormalize,
    resize,
)
from violetv2.tasks.losses import LossScale, check_loss_scale, masked_mean, masked_sum_over

__all__ = [
    "MVMTarget",
    "TeacherTarget",
    "PixelTarget",
    "HOGTarget",
    "DepthTarget",
    "FlowTarget",
    "VQTarget",
    "SIFTarget",
    "CLIPTarget",
    "VidSwinTarget",
    "TARGETS",
    "MVMTargets",
    "build_targets",
    "expand_mask",
]


# ----------------------------------------------------------------------------------------------- helpers


def expand_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Patch mask ``[b, t, gh, gw]`` -> ``[b, t, 1, h, w]`` at a target resolution (a multiple of the grid)."""
    gh, gw = mask.shape[-2:]
    h, w = size
    if h % gh or w % gw:
        raise ValueError(f"target size {size} is not a multiple of the mask grid {(gh, gw)}")
    return repeat(mask, "b t gh gw -> b t 1 (gh sh) (gw sw)", sh=h // gh, sw=w // gw)


def _sample_weight(mask: Tensor, valid: Tensor | None) -> Tensor:
    """Bool ``mask [b, ...]`` times an optional ``valid [b]``."""
    if valid is None:
        return mask
    return mask & valid.bool().view(-1, *([1] * (mask.dim() - 1)))


def _check_mask(mask: Tensor, b: int, t: int) -> None:
    if mask.dim() != 4 or tuple(mask.shape[:2]) != (b, t) or mask.dtype != torch.bool:
        raise ValueError(
            f"MVM mask must be bool [b={b}, t={t}, gh, gw]; got {mask.dtype} {tuple(mask.shape)}"
        )


def _frames(video: Tensor) -> Tensor:
    if video.dim() != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be [b, t, 3, h, w], got shape {tuple(video.shape)}")
    return rearrange(video, "b t c h w -> (b t) c h w")


def _grid(video: Tensor, stride: int = 32) -> tuple[int, int]:
    h, w = video.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(f"frame size {(h, w)} is not a multiple of the {stride}-pixel patch")
    return h // stride, w // stride


def _to_grid(features: Tensor, grid: tuple[int, int]) -> Tensor:
    """``[n, c, h', w']`` teacher map -> ``[n, c, gh, gw]`` (average-pooled when the grids differ)."""
    return features if tuple(features.shape[-2:]) == grid else F.adaptive_avg_pool2d(features, grid)


# ------------------------------------------------------------------------------------------- base classes


class MVMTarget:
    """Base class of an MVM target (see the module docstring for the contract).

    Subclasses set ``name`` and implement ``build_head``, ``_compute`` and ``loss``.
    """

    name: ClassVar[str] = ""
    #: ``"published"`` (the public code's scale) or ``"mean"``; :class:`MVMTargets` sets it on every target.
    loss_scale: LossScale = "published"

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        """A fresh trainable head for ``cfg`` (patch tokens ``[b, t, gh*gw, d]`` -> prediction)."""
        raise NotImplementedError

    def setup(self, device: torch.device | str = "cpu") -> None:
        """Load the frozen teacher (if any) and move it to ``device``."""

    def teardown(self) -> None:
        """Drop the teacher (if any); it is rebuilt by the next ``setup`` or ``compute``."""

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen network computing the target, ``None`` for teacher-free targets or before ``setup``."""
        return None

    def spec(self) -> dict[str, Any]:
        """What a checkpoint records about this target: its name and constructor options (no weights)."""
        return {"name": self.name}

    @torch.no_grad()
    def compute(self, video: Tensor) -> Tensor:
        """The target from the unmasked ImageNet-normalised clip ``[b, t, 3, h, w]``."""
        _frames(video)
        return self._compute(video)

    def _compute(self, video: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        """Scalar loss over masked positions (``mask [b, t, gh, gw]``) of ``valid`` clips."""
        raise NotImplementedError

    def metrics(
        self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Extra numbers worth logging (none by default)."""
        return {}

    def predict(self, head: nn.Module, patches: Tensor) -> Tensor:
        """Run ``head`` on the patch tokens ``[b, t, n, d]``."""
        return head(patches)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.spec().items() if k != "name")
        return f"{type(self).__name__}({opts})"


class _DenseTarget(MVMTarget):
    """Targets laid out ``[b, t, c, h, w]`` (pixel, HOG, depth, flow) with an elementwise loss.

    ``published_divisor`` divides the masked-element mean under ``loss_scale="published"``.
    """

    reduction: ClassVar[Literal["l1", "mse"]] = "l1"
    published_divisor: ClassVar[float] = 1.0

    def _mask(self, mask: Tensor, target: Tensor) -> Tensor:
        _check_mask(mask, target.shape[0], target.shape[1])
        return expand_mask(mask, tuple(target.shape[-2:]))

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"{self.name}: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
        err = (pred - target).abs() if self.reduction == "l1" else (pred - target).pow(2)
        where = _sample_weight(self._mask(mask, target), valid)
        if self.loss_scale == "mean":
            return masked_mean(err, where)
        return masked_sum_over(err, where, per="element", divisor=self.published_divisor)


class _FeatureTarget(MVMTarget):
    """Targets laid out ``[b, t, gh*gw, c]`` (SIF, CLIP, VidSwin) with an L1 loss.

    Published scale: the L1 summed over the ``c`` channels of each masked patch, averaged over the masked
    patches, divided by 3 (``c / 3`` times the mean over channels).
    """

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"{self.name}: prediction {tuple(pred.shape)} vs target {tuple(target.shape)}")
        _check_mask(mask, target.shape[0], target.shape[1])
        m = _sample_weight(rearrange(mask, "b t gh gw -> b t (gh gw) 1"), valid)
        if self.loss_scale == "mean":
            return masked_mean((pred - target).abs(), m)
        return masked_sum_over((pred - target).abs(), m, per="position", divisor=3.0)


class TeacherTarget(MVMTarget):
    """A target computed by a frozen network loaded with ``from_pretrained(model_name_or_path)``.

    The teacher is held as a plain attribute (never registered anywhere), kept in ``eval()`` with
    ``requires_grad=False``, and loaded on first ``setup``/``compute``.
    """

    default_model: ClassVar[str] = ""

    def __init__(self, model_name_or_path: str | None = None) -> None:
        self.model_name_or_path = model_name_or_path or self.default_model
        self._teacher: nn.Module | None = None

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "model_name_or_path": str(self.model_name_or_path)}

    def _load(self) -> nn.Module:
        raise NotImplementedError

    def setup(self, device: torch.device | str = "cpu") -> None:
        if self._teacher is None:
            self._teacher = freeze(self._load())
        self._teacher.to(device)
        self._teacher.eval()

    def teardown(self) -> None:
        self._teacher = None

    def _ready(self, video: Tensor) -> nn.Module:
        """The teacher, loaded, in eval mode and on the video's device."""
        teacher = self._teacher
        if teacher is None or next(teacher.parameters()).device != video.device or teacher.training:
            self.setup(video.device)
        return self._teacher  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------ targets


class PixelTarget(_DenseTarget):
    """Normalised RGB of every 32x32 patch; L1.

    Args:
        normalize_patches: MAE-style: standardise each 32x32 patch per channel (mean/var over its pixels).
        patch_size: Side of the patch used by ``normalize_patches`` (the model's 32-pixel stride).
    """

    name = "pixel"
    published_divisor = 3.0  # the 3 colour channels

    def __init__(self, normalize_patches: bool = False, patch_size: int = 32) -> None:
        self.normalize_patches, self.patch_size = normalize_patches, patch_size

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "normalize_patches": self.normalize_patches, "patch_size": self.patch_size}

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return PixelShuffleHead(cfg.hidden_size, 3, cfg.video_stride)

    def _compute(self, video: Tensor) -> Tensor:
        if not self.normalize_patches:
            return video.clone()
        p = self.patch_size
        x = rearrange(video, "b t c (gh ph) (gw pw) -> b t c gh gw (ph pw)", ph=p, pw=p)
        x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        return rearrange(x, "b t c gh gw (ph pw) -> b t c (gh ph) (gw pw)", ph=p)


class HOGTarget(_DenseTarget):
    """Histograms of oriented gradients, computed batched with torch/Kornia on the video's device.

    Args:
        variant: ``"maskfeat"`` (default): per-RGB-channel Sobel histograms, 9 bins, 8x8 cells, L2-normalised
            per cell -> ``[b, t, 27, h/8, w/8]``, MSE. ``"skimage"``: the published release's target, the
            scikit-image HOG visualisation image of the grayscale frame -> ``[b, t, 1, h, w]``, L1.
        orientations: Orientation bins over 0-180 degrees.
        cell_size: Cell side in pixels (must divide the 32-pixel patch).
    """

    name = "hog"

    def __init__(
        self, variant: Literal["maskfeat", "skimage"] = "maskfeat", orientations: int = 9, cell_size: int = 8
    ) -> None:
        if variant not in ("maskfeat", "skimage"):
            raise ValueError(f"HOG variant must be 'maskfeat' or 'skimage', got {variant!r}")
        self.variant, self.orientations, self.cell_size = variant, orientations, cell_size
        self.reduction = "mse" if variant == "maskfeat" else "l1"  # type: ignore[misc]

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "variant": self.variant,
            "orientations": self.orientations,
            "cell_size": self.cell_size,
        }

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        if cfg.video_stride % self.cell_size:
            raise ValueError(
                f"HOG cell_size={self.cell_size} does not divide the {cfg.video_stride}-px patch"
            )
        if self.variant == "skimage":
            return PixelShuffleHead(cfg.hidden_size, 1, cfg.video_stride)
        return PixelShuffleHead(cfg.hidden_size, 3 * self.orientations, cfg.video_stride // self.cell_size)

    def _compute(self, video: Tensor) -> Tensor:
        rgb = denormalize(_frames(video).float())
        if self.variant == "maskfeat":
            out = hog_ops.maskfeat_hog(rgb, self.orientations, self.cell_size)
        else:
            out = hog_ops.hog_visualisation(hog_ops.to_gray(rgb), self.orientations, self.cell_size)
        return rearrange(out, "(b t) c h w -> b t c h w", b=video.shape[0])


class DepthTarget(_DenseTarget, TeacherTarget):
    """Relative inverse depth from a frozen DPT (``DPTForDepthEstimation``), per-frame standardised; L1.

    Frames are de-normalised, resized to ``input_size`` and normalised with mean = std = 0.5 (the DPT image
    processor's settings); the predicted depth is resized back (bicubic) to the frame and standardised per
    frame (zero mean, unit variance).

    Args:
        model_name_or_path: Hub id or local ``save_pretrained`` directory.
        input_size: Side the teacher sees (384 for DPT-Large); ``None`` keeps the frame size.
    """

    name = "depth"
    published_divisor = 3.0  # the error broadcast over the 3-channel pixel mask
    default_model = "Intel/dpt-large"

    def __init__(self, model_name_or_path: str | None = None, input_size: int | None = 384) -> None:
        TeacherTarget.__init__(self, model_name_or_path)
        self.input_size = input_size

    def spec(self) -> dict[str, Any]:
        return {**TeacherTarget.spec(self), "input_size": self.input_size}

    def _load(self) -> nn.Module:
        return load_hf_teacher("DPTForDepthEstimation", self.model_name_or_path)

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return PixelShuffleHead(cfg.hidden_size, 1, cfg.video_stride)

    def _compute(self, video: Tensor) -> Tensor:
        teacher = self._ready(video)
        frames = _frames(video).float()
        x = renormalize(resize(denormalize(frames), self.input_size), (0.5,) * 3, (0.5,) * 3)
        depth = resize(teacher(pixel_values=x).predicted_depth.unsqueeze(1), tuple(frames.shape[-2:]))
        mean, std = depth.mean((1, 2, 3), keepdim=True), depth.std((1, 2, 3), keepdim=True)
        return rearrange((depth - mean) / (std + 1e-6), "(b t) 1 h w -> b t 1 h w", b=video.shape[0])


class _PairHead(nn.Module):
    """Concatenates consecutive frames' tokens (``[b, t, n, d] -> [b, t-1, n, 2d]``) before a dense head."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, patches: Tensor) -> Tensor:
        return self.head(torch.cat([patches[:, :-1], patches[:, 1:]], dim=-1))


class FlowTarget(_DenseTarget, TeacherTarget):
    """Optical flow between consecutive frames from a frozen network; ``[b, t-1, 2 (x, y), h, w]`` in pixels.

    Backends:

    - ``"perceiver"`` (default): ``transformers.PerceiverForOpticalFlow`` (deepmind/optical-flow-perceiver).
      It only runs at its training size (``config.train_size``, 368x496): frames are resized to it, every
      pixel gets its 3x3 neighbourhood (27 values, ``(kh, kw, c)`` order, zero padding, pixels in [-1, 1]),
      and the flow is resized back with each component rescaled to frame pixels.
    - ``"raft"``: torchvision's RAFT-large (the published teacher, 12 iterations); needs the optional
      ``torchvision`` (``pip install violetv2[teachers]``); ``model_name_or_path`` is then a torchvision
      weights file or ``"default"``.

    Clips whose maximum flow magnitude reaches ``max_magnitude`` pixels are dropped from the loss (see
    :meth:`valid`), as published. The mask of pair ``(t, t+1)`` is the union of both frames' masks.

    Args:
        model_name_or_path: Hub id / local directory (perceiver) or weights file (raft).
        backend: ``"perceiver"`` or ``"raft"``.
        max_magnitude: Clips with flow this large (pixels) are invalid.
        raft_iterations: RAFT refinement iterations.
    """

    name = "flow"
    published_divisor = 2.0  # the 2 flow components
    default_model = "deepmind/optical-flow-perceiver"

    def __init__(
        self,
        model_name_or_path: str | None = None,
        backend: Literal["perceiver", "raft"] = "perceiver",
        max_magnitude: float = 50.0,
        raft_iterations: int = 12,
    ) -> None:
        if backend not in ("perceiver", "raft"):
            raise ValueError(f"flow backend must be 'perceiver' or 'raft', got {backend!r}")
        TeacherTarget.__init__(self, model_name_or_path or ("default" if backend == "raft" else None))
        self.backend, self.max_magnitude, self.raft_iterations = backend, max_magnitude, raft_iterations

    def spec(self) -> dict[str, Any]:
        return {**TeacherTarget.spec(self), "backend": self.backend, "max_magnitude": self.max_magnitude}

    def _load(self) -> nn.Module:
        if self.backend == "perceiver":
            return load_hf_teacher("PerceiverForOpticalFlow", self.model_name_or_path)
        return load_raft(self.model_name_or_path)

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return _PairHead(PixelShuffleHead(2 * cfg.hidden_size, 2, cfg.video_stride))

    def _compute(self, video: Tensor) -> Tensor:
        b, t, _, h, w = video.shape
        if t < 2:
            return video.new_zeros(b, 0, 2, h, w)
        teacher = self._ready(video)
        rgb = denormalize(_frames(video).float()).clamp(0, 1)
        rgb = rearrange(rgb, "(b t) c h w -> b t c h w", b=b)
        first = rearrange(rgb[:, :-1], "b t c h w -> (b t) c h w")
        second = rearrange(rgb[:, 1:], "b t c h w -> (b t) c h w")
        if self.backend == "perceiver":
            flow = perceiver_flow(teacher, first, second)  # [(b t-1), 2, h, w]
        else:
            flow = raft_flow(teacher, first, second, self.raft_iterations)
        return rearrange(flow, "(b t) c h w -> b t c h w", b=b)

    def valid(self, target: Tensor) -> Tensor:
        """``[b]`` bool: clips whose largest flow magnitude is below ``max_magnitude`` (and with a pair)."""
        if target.shape[1] == 0:
            return torch.zeros(target.shape[0], dtype=torch.bool, device=target.device)
        magnitude = target.pow(2).sum(2).sqrt()
        return reduce(magnitude, "b t h w -> b", "max") < self.max_magnitude

    def _mask(self, mask: Tensor, target: Tensor) -> Tensor:
        _check_mask(mask, target.shape[0], target.shape[1] + 1)
        return expand_mask(mask[:, :-1] | mask[:, 1:], tuple(target.shape[-2:]))

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        keep = self.valid(target) if valid is None else valid.bool() & self.valid(target)
        return super().loss(pred, target, mask, keep)


class VQTarget(TeacherTarget):
    """Discrete codes of a frozen DALL-E-style dVAE encoder (``transformers.FlavaImageCodebook``); CE.

    The codebook is a conv net with an 8x downsampling, so one code per 8x8 pixels of the frame: frames are
    fed at their own size (``input_size=None``; FLAVA's own processor uses 112 px for a 224 image, i.e. one
    code per 16x16 image pixels, which is not the published per-8x8 target). Input: RGB in [0, 1] (no
    mean/std), mapped to ``[0.1, 0.9]`` (FLAVA/DALL-E ``map_pixels``). Target ``[b, t, h/8, w/8]`` long;
    head ``VQHead(d, 4)`` -> logits ``[b, t, h/8, w/8, num_codes]``.

    Args:
        model_name_or_path: Hub id or local ``save_pretrained`` directory.
        num_codes: Codebook size (8192); checked against the teacher when it loads.
        input_size: Side the codebook sees; ``None`` keeps the frame size.
    """

    name = "vq"
    default_model = "facebook/flava-image-codebook"

    def __init__(
        self, model_name_or_path: str | None = None, num_codes: int = 8192, input_size: int | None = None
    ) -> None:
        super().__init__(model_name_or_path)
        self.num_codes, self.input_size = num_codes, input_size

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "num_codes": self.num_codes, "input_size": self.input_size}

    def _load(self) -> nn.Module:
        model = load_hf_teacher("FlavaImageCodebook", self.model_name_or_path)
        if model.config.vocab_size != self.num_codes:
            raise ValueError(
                f"VQ teacher {self.model_name_or_path!r} has {model.config.vocab_size} codes, "
                f"the target was built with num_codes={self.num_codes}"
            )
        return model

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return VQHead(cfg.hidden_size, cfg.video_stride // 8, self.num_codes)

    def _compute(self, video: Tensor) -> Tensor:
        teacher = self._ready(video)
        frames = _frames(video).float()
        x = resize(denormalize(frames).clamp(0, 1), self.input_size, "bilinear") * 0.8 + 0.1
        codes = teacher.get_codebook_indices(x)  # [n, h/8, w/8]
        size = (frames.shape[-2] // 8, frames.shape[-1] // 8)
        if tuple(codes.shape[-2:]) != size:
            codes = F.interpolate(codes[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return rearrange(codes, "(b t) h w -> b t h w", b=video.shape[0])

    def _mask(self, mask: Tensor, target: Tensor) -> Tensor:
        _check_mask(mask, target.shape[0], target.shape[1])
        return expand_mask(mask, tuple(target.shape[-2:]))[:, :, 0]

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None) -> Tensor:
        if pred.shape[:-1] != target.shape:
            raise ValueError(f"vq: logits {tuple(pred.shape)} vs codes {tuple(target.shape)}")
        ce = F.cross_entropy(rearrange(pred, "b t h w k -> b k t h w").float(), target, reduction="none")
        return masked_mean(ce, _sample_weight(self._mask(mask, target), valid))

    def metrics(
        self, pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor | None = None
    ) -> dict[str, Tensor]:
        hit = (pred.argmax(-1) == target).float()
        return {"acc": masked_mean(hit, _sample_weight(self._mask(mask, target), valid)).detach()}


class SIFTarget(_FeatureTarget, TeacherTarget):
    """Frozen 2-D Swin (``transformers.SwinModel``) per frame: ``hidden_states[-1]`` (last stage, before the
    final LayerNorm) -> ``[b, t, gh*gw, C]`` (1024 for Swin-B). The VIOLETv2 default target.

    Frames are fed as they come (ImageNet-normalised, the model's resolution), as published; frames smaller
    than the teacher's native size (224) are resized up to it, and a teacher grid different from the model's
    is average-pooled to it.

    Args:
        model_name_or_path: Hub id or local ``save_pretrained`` directory.
        feature_dim: Teacher width; ``None`` reads it from the teacher config (no weights loaded).
    """

    name = "sif"
    default_model = "microsoft/swin-base-patch4-window7-224-in22k"

    def __init__(self, model_name_or_path: str | None = None, feature_dim: int | None = None) -> None:
        TeacherTarget.__init__(self, model_name_or_path)
        self.feature_dim = feature_dim

    def _load(self) -> nn.Module:
        return load_hf_teacher("SwinModel", self.model_name_or_path, add_pooling_layer=False)

    def _width(self) -> int:
        if self.feature_dim is None:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(self.model_name_or_path)
            self.feature_dim = int(cfg.embed_dim * 2 ** (len(cfg.depths) - 1))
        return self.feature_dim

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return FeatureHead(cfg.hidden_size, self._width(), cfg.dropout)

    def _compute(self, video: Tensor) -> Tensor:
        teacher = self._ready(video)
        frames = _frames(video).float()
        native = getattr(teacher.config, "image_size", None)
        if isinstance(native, int) and min(frames.shape[-2:]) < native:
            frames = resize(frames, native)  # its windows need at least its native size
        out = teacher(pixel_values=frames, output_hidden_states=True)
        last = out.hidden_states[-1]  # [n, h'*w', C], before the final LayerNorm
        side = math.isqrt(last.shape[1])
        feat = _to_grid(rearrange(last, "n (h w) c -> n c h w", h=side), _grid(video))
        return rearrange(feat, "(b t) c h w -> b t (h w) c", b=video.shape[0])


class CLIPTarget(_FeatureTarget, TeacherTarget):
    """Frozen ``transformers.CLIPVisionModel`` patch tokens per frame (``last_hidden_state`` without [CLS],
    before ``post_layernorm``) -> ``[b, t, gh*gw, 768]`` for ViT-B/32 at 224 px.

    Frames are de-normalised and re-normalised with CLIP's mean/std; position embeddings are interpolated
    when the frame size differs from the teacher's ``image_size``.

    Args:
        model_name_or_path: Hub id or local ``save_pretrained`` directory.
        feature_dim: Teacher width; ``None`` reads it from the teacher config.
    """

    name = "clip"
    default_model = "openai/clip-vit-base-patch32"

    def __init__(self, model_name_or_path: str | None = None, feature_dim: int | None = None) -> None:
        TeacherTarget.__init__(self, model_name_or_path)
        self.feature_dim = feature_dim

    def _load(self) -> nn.Module:
        return load_hf_teacher("CLIPVisionModel", self.model_name_or_path)

    def _width(self) -> int:
        if self.feature_dim is None:
            from transformers import CLIPVisionConfig

            self.feature_dim = int(CLIPVisionConfig.from_pretrained(self.model_name_or_path).hidden_size)
        return self.feature_dim

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return FeatureHead(cfg.hidden_size, self._width(), cfg.dropout)

    def _compute(self, video: Tensor) -> Tensor:
        teacher = self._ready(video)
        x = renormalize(denormalize(_frames(video).float()), CLIP_MEAN, CLIP_STD)
        interpolate = x.shape[-1] != teacher.config.image_size or x.shape[-2] != teacher.config.image_size
        tokens = teacher(pixel_values=x, interpolate_pos_encoding=interpolate).last_hidden_state[:, 1:]
        side = x.shape[-2] // teacher.config.patch_size
        feat = _to_grid(rearrange(tokens, "n (h w) c -> n c h w", h=side), _grid(video))
        return rearrange(feat, "(b t) c h w -> b t (h w) c", b=video.shape[0])


class VidSwinTarget(_FeatureTarget, TeacherTarget):
    """Frozen Video Swin (:class:`violetv2.models.video_swin.VideoSwin`, Kinetics weights): the clip's
    ``[b, C, t, gh, gw]`` output (after its final LayerNorm, temporal stride 1 so T frames give T maps)
    -> ``[b, t, gh*gw, C]``.

    Args:
        model_name_or_path: An official Video Swin checkpoint (``{"state_dict": {"backbone.*", ...}}``,
            converted on load with :func:`violetv2.convert.from_video_swin`) or a violetv2-format ``VideoSwin``
            state dict (``.safetensors`` / ``.pt``, optionally under ``key_prefix``).
        preset: VioletConfig preset whose ``swin_*`` fields give the architecture.
        key_prefix: Prefix stripped from the file's keys (e.g. ``"backbone."``).
    """

    name = "vidswin"
    default_model = ""

    def __init__(
        self, model_name_or_path: str | None = None, preset: str = "violetv2-base", key_prefix: str = ""
    ) -> None:
        TeacherTarget.__init__(self, model_name_or_path)
        self.preset, self.key_prefix = preset, key_prefix

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "preset": self.preset, "key_prefix": self.key_prefix}

    def _arch(self) -> VioletConfig:
        return VioletConfig.from_name(self.preset)

    def _load(self) -> nn.Module:
        from violetv2.convert import from_video_swin
        from violetv2.models.video_swin import VideoSwin

        if not self.model_name_or_path:
            raise ValueError("the vidswin target needs model_name_or_path: a Video Swin checkpoint")
        sd = read_state_dict(self.model_name_or_path, self.key_prefix)
        if "backbone.patch_embed.proj.weight" in sd:  # an official Kinetics checkpoint: convert on the fly
            return from_video_swin(sd, temporal_stride=self._arch().swin_temporal_stride)
        c = self._arch()
        model = VideoSwin(
            c.swin_embed_dim, c.swin_depths, c.swin_heads, c.swin_window, c.swin_patch,
            c.swin_temporal_stride, c.swin_mlp_ratio, 0.0, c.swin_norm_eps,
        )  # fmt: skip
        model.load_state_dict(sd, strict=True)
        return model

    def build_head(self, cfg: VioletConfig) -> nn.Module:
        return FeatureHead(cfg.hidden_size, self._arch().swin_out_dim, cfg.dropout)

    def _compute(self, video: Tensor) -> Tensor:
        teacher = self._ready(video)
        out = teacher(rearrange(video.float(), "b t c h w -> b c t h w"))  # [b, C, t, h', w']
        feat = _to_grid(rearrange(out, "b c t h w -> (b t) c h w"), _grid(video))
        return rearrange(feat, "(b t) c h w -> b t (h w) c", b=video.shape[0])


# -------------------------------------------------------------------------------------------- container

TARGETS: dict[str, type[MVMTarget]] = {
    cls.name: cls
    for cls in (
        PixelTarget,
        HOGTarget,
        DepthTarget,
        FlowTarget,
        VQTarget,
        SIFTarget,
        CLIPTarget,
        VidSwinTarget,
    )
}


class MVMTargets:
    """Several weighted targets used together (e.g. SIF + HOG). A plain object, not an ``nn.Module``.

    Args:
        targets: The target objects (unique names).
        weights: Loss weight per target name (default 1.0 each, as published).
        loss_scale: ``"published"`` (each target's published reduction) or ``"mean"`` (masked-element means),
            set on every target; see the module docstring.
    """

    def __init__(
        self,
        targets: Sequence[MVMTarget],
        weights: Mapping[str, float] | None = None,
        loss_scale: LossScale = "published",
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"MVM targets must be a non-empty list of distinct names, got {names}")
        check_loss_scale(loss_scale)
        self.targets = {t.name: t for t in targets}
        self.weights = {n: float((weights or {}).get(n, 1.0)) for n in names}
        self.loss_scale = loss_scale
        for t in targets:
            t.loss_scale = loss_scale

    def __iter__(self):  # noqa: ANN204
        return iter(self.targets.values())

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, name: str) -> MVMTarget:
        return self.targets[name]

    def build_heads(self, cfg: VioletConfig) -> nn.ModuleDict:
        """One trainable head per target, keyed by name (register this on the model)."""
        return nn.ModuleDict({n: t.build_head(cfg) for n, t in self.targets.items()})

    def setup(self, device: torch.device | str = "cpu") -> None:
        """Load every teacher and move it to ``device``."""
        for t in self:
            t.setup(device)

    def teardown(self) -> None:
        """Drop every teacher."""
        for t in self:
            t.teardown()

    def teachers(self) -> dict[str, nn.Module]:
        """The loaded teachers by target name."""
        return {n: t.teacher for n, t in self.targets.items() if t.teacher is not None}

    def spec(self) -> list[dict[str, Any]]:
        """Names, options and weights: what a checkpoint records instead of teacher weights."""
        return [{**t.spec(), "weight": self.weights[n]} for n, t in self.targets.items()]

    @torch.no_grad()
    def compute(self, video: Tensor) -> dict[str, Tensor]:
        """Every target from the unmasked clip ``[b, t, 3, h, w]``."""
        return {n: t.compute(video) for n, t in self.targets.items()}

    def predict(self, heads: Mapping[str, nn.Module], patches: Tensor) -> dict[str, Tensor]:
        """Every head on the fused patch tokens ``[b, t, gh*gw, d]``."""
        return {n: t.predict(heads[n], patches) for n, t in self.targets.items()}

    def losses(
        self,
        preds: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        mask: Tensor,
        valid: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{"loss": weighted sum, "mvm_<name>": each loss, "mvm_<name>_<metric>": extras}``."""
        out: dict[str, Tensor] = {}
        total = mask.new_zeros((), dtype=torch.float32)
        for n, t in self.targets.items():
            loss = t.loss(preds[n], targets[n], mask, valid)
            out[f"mvm_{n}"] = loss
            out.update({f"mvm_{n}_{k}": v for k, v in t.metrics(preds[n], targets[n], mask, valid).items()})
            total = total + self.weights[n] * loss
        out["loss"] = total
        return out


def build_targets(
    spec: Mapping[str, float] | Sequence[str] | str = "sif",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    loss_scale: LossScale = "published",
) -> MVMTargets:
    """Targets by name: ``build_targets({"sif": 1.0, "hog": 1.0}, {"sif": {"model_name_or_path": dir}})``.

    Args:
        spec: One name, a list of names (weight 1 each), or ``{name: weight}``. Names: pixel, hog, depth,
            flow, vq, sif, clip, vidswin.
        options: Constructor keyword arguments per target name.
        loss_scale: ``"published"`` or ``"mean"`` (see :class:`MVMTargets`).
    """
    if isinstance(spec, str):
        spec = [spec]
    weights = dict(spec) if isinstance(spec, Mapping) else {n: 1.0 for n in spec}
    options = dict(options or {})
    unknown = [n for n in [*weights, *options] if n not in TARGETS]
    if unknown:
        raise ValueError(f"unknown MVM target(s) {unknown}; known: {', '.join(TARGETS)}")
    extra = set(options) - set(weights)
    if extra:
        raise ValueError(
            f"options given for MVM target(s) {sorted(extra)} that are not in the spec {list(weights)}"
        )
    return MVMTargets([TARGETS[n](**options.get(n, {})) for n in weights], weights, loss_scale)
