"""Text-to-video retrieval with the cross-encoder: every text-video pair is scored by the VTM head."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..models.violet import VioletModel

__all__ = ["recall_at_k", "score_all_pairs"]


@torch.no_grad()
def score_all_pairs(
    model: VioletModel,
    video: Tensor,
    text_ids: Tensor,
    text_mask: Tensor,
    *,
    pair_batch: int = 256,
    progress: bool = False,
) -> Tensor:
    """``[num_texts, num_videos]`` VTM logits of every pair (videos are encoded once).

    Args:
        model: Model with a VTM head, in eval mode.
        video: ``[n, t, c, h, w]`` clips.
        text_ids: ``[m, l]`` texts.
        text_mask: ``[m, l]`` their masks.
        pair_batch: Pairs per fusion forward.
        progress: Show a progress bar over texts.
    """
    backbone = model.backbone
    grid = backbone.grid(video)
    tokens = torch.cat([backbone.encode_video(v) for v in video.split(pair_batch)])
    n, m = tokens.shape[0], text_ids.shape[0]
    scores = torch.empty(m, n, device=tokens.device)
    per_text = max(1, pair_batch // n)
    for start in tqdm(range(0, m, per_text), desc="scoring pairs", disable=not progress, leave=False):
        ids, mask = text_ids[start : start + per_text], text_mask[start : start + per_text]
        k = ids.shape[0]
        fused = backbone.fuse(
            tokens.repeat(k, 1, 1),
            ids.repeat_interleave(n, 0),
            mask.repeat_interleave(n, 0),
            frames=video.shape[1],
            grid=grid,
        )
        scores[start : start + k] = model.vtm_logits(fused).view(k, n)
    return scores


def recall_at_k(scores: Tensor, positive: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k (in %) and median rank of the positive video for every text.

    Args:
        scores: ``[num_texts, num_videos]``, higher = better match.
        positive: ``[num_texts]`` index of each text's video.
    """
    target = scores.gather(1, positive[:, None])
    rank = (scores > target).sum(1) + 1  # ties count in the text's favour
    out = {f"R@{k}": 100.0 * (rank <= k).float().mean().item() for k in ks}
    out["MdR"] = rank.float().median().item()
    return out
