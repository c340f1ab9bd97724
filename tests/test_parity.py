"""Numerical parity with the published VIOLETv2 forward (../shared/reference/parity).

The fixture's state dict is rebuilt from its key list by the fixture's own `make_state_dict.py` (~5 s), converted
with `violetv2.convert`, and every recorded tensor is reproduced in fp32 on CPU within atol 1e-4 (raw VTM logits
1e-5). `x.sif_target` is checked by the MVM target tests.
"""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from violetv2.convert.release import convert_release
from violetv2.models.fusion import seq2seq_mask

ATOL = 1e-4


@pytest.fixture(scope="module")
def parity(reference_dir):
    from safetensors.torch import load_file

    folder = os.path.join(reference_dir, "parity")
    spec = importlib.util.spec_from_file_location(
        "make_state_dict", os.path.join(folder, "make_state_dict.py")
    )
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    model, layout = convert_release(maker.build_state_dict(), source_name="parity state dict")
    assert layout.preset == "violetv2-base" and layout.mvm == ("sif",)
    return model, load_file(os.path.join(folder, "violetv2_parity.safetensors")), folder


@pytest.fixture(scope="module")
def outputs(parity):
    model, ref, _ = parity
    video, ids, mask = ref["in.video"], ref["in.txt_ids"], ref["in.txt_mask"]
    bb = model.backbone
    out = {}
    with torch.no_grad():
        out["swin.out"] = bb.video.features(video)
        tokens = bb.video.tokens(out["swin.out"])
        out["a.video_feat"] = tokens
        out["b.text_emb"] = bb.text(ids)
        fused = bb.fuse(tokens, ids, mask, frames=4, grid=(7, 7), return_attention=True)
        out["c.cross_out"] = fused.hidden
        out["x.att_sum"] = fused.attention
        swapped = bb.fuse(tokens, ids.flip(0), mask.flip(0), frames=4, grid=(7, 7))
        out["d.cls_hidden_swapped"] = swapped.cls
        out["d.vtm_logit"] = torch.stack([model.vtm_logits(fused), model.vtm_logits(swapped)], dim=1)
        out["d.vtm_logit_over_temp"] = out["d.vtm_logit"] / 0.05
        out["e.mlm_logits_pos1_8"] = model.mlm_logits(fused)[:, 1:9]
        out["f.mvm_sif_pred"] = model.mvm_heads["sif"](fused.video_patches)
        s2s = bb.fuse(tokens, ids, mask, frames=4, grid=(7, 7), mode="seq2seq")
        out["g.cross_out_seq2seq"] = s2s.hidden
        top = model.mlm_logits(s2s)[:, 1:9].topk(10, dim=-1)
        out["g.smtm_top10_values_pos1_8"] = top.values
    video_mask = torch.ones(2, 200, dtype=torch.long)
    out["a.video_mask"] = video_mask
    out["c.cross_mask"] = torch.cat([video_mask, mask], dim=1)
    out["g.seq2seq_mask"] = seq2seq_mask(video_mask, mask)[:, 0].long()
    return out


FLOAT_TENSORS = [
    "swin.out",
    "a.video_feat",
    "b.text_emb",
    "c.cross_out",
    "d.cls_hidden_swapped",
    "d.vtm_logit_over_temp",
    "e.mlm_logits_pos1_8",
    "f.mvm_sif_pred",
    "g.cross_out_seq2seq",
    "g.smtm_top10_values_pos1_8",
    "x.att_sum",
]


@pytest.mark.parametrize("name", FLOAT_TENSORS)
def test_tensor_matches_reference(parity, outputs, name):
    ref = parity[1][name]
    assert outputs[name].shape == ref.shape
    assert (outputs[name] - ref).abs().max().item() <= ATOL


def test_raw_vtm_logits_tight(parity, outputs):
    ref = parity[1]["d.vtm_logit"]
    assert (outputs["d.vtm_logit"] - ref).abs().max().item() <= 1e-5
    # the matched-vs-swapped difference (~2e-3) is reproduced, not just the scale
    assert torch.allclose(outputs["d.vtm_logit"].diff(dim=1), ref.diff(dim=1), atol=1e-5)


@pytest.mark.parametrize("name", ["a.video_mask", "c.cross_mask", "g.seq2seq_mask"])
def test_masks_equal(parity, outputs, name):
    assert torch.equal(outputs[name], parity[1][name])


def test_fixture_compare_script_agrees(parity, outputs, tmp_path):
    from safetensors.torch import save_file

    candidate = tmp_path / "ours.safetensors"
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(candidate))
    script = os.path.join(parity[2], "compare_outputs.py")
    ref = os.path.join(parity[2], "violetv2_parity.safetensors")
    result = subprocess.run(
        [sys.executable, script, ref, str(candidate), "--atol", str(ATOL)], capture_output=True
    )
    assert result.returncode == 0, result.stdout.decode()[-2000:]


@pytest.mark.gpu
def test_parity_on_cuda(parity):
    """The same forward on CUDA in fp32 (TF32 off) stays within the CPU tolerance."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, ref, _ = parity
    model = model.cuda()
    video, ids, mask = (ref[k].cuda() for k in ("in.video", "in.txt_ids", "in.txt_mask"))
    with torch.no_grad():
        fused = model.backbone(video, ids, mask, return_attention=True)
        s2s = model.backbone(video, ids, mask, mode="seq2seq")
        got = {
            "c.cross_out": fused.hidden,
            "x.att_sum": fused.attention,
            "e.mlm_logits_pos1_8": model.mlm_logits(fused)[:, 1:9],
            "f.mvm_sif_pred": model.mvm_heads["sif"](fused.video_patches),
            "g.cross_out_seq2seq": s2s.hidden,
        }
        vtm = model.vtm_logits(fused)
    model.cpu()
    for name, value in got.items():
        assert (value.cpu() - ref[name]).abs().max().item() <= ATOL, name
    assert (vtm.cpu() - ref["d.vtm_logit"][:, 0]).abs().max().item() <= 1e-5
