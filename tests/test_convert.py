"""Foreign checkpoints: full-size key maps on `meta`, small-size round trips with values, loud failures."""

import pickle

import pytest
import torch

from violetv2 import VioletModule
from violetv2.config import VioletConfig
from violetv2.convert import (
    ConversionError,
    from_release,
    from_video_swin,
    load_bert_into,
    load_into,
    load_video_swin_into,
    save_checkpoint,
)
from violetv2.convert.__main__ import main as convert_main
from violetv2.convert.keymap import convert_state_dict
from violetv2.convert.release import detect_layout, export_release, release_conversion
from violetv2.convert.video_swin import VIDEO_SWIN_TABLE, inflate_patch_embed
from violetv2.models import VideoSwin, VioletModel


def _tsv(path, skip_header=False):
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            if skip_header and i == 0:
                continue
            rows.append(line.rstrip("\n").split("\t"))
    return rows


def _shape(text):
    return tuple(int(s) for s in text.strip("[]").split(",") if s.strip())


def _meta_sd(pairs):
    return {name: torch.empty(_shape(shape), device="meta") for name, shape in pairs}


@pytest.fixture(scope="module")
def release_keys(reference_dir):
    return _tsv(f"{reference_dir}/violetv2_state_dict_keys.tsv")


def test_release_full_key_map_on_meta(release_keys):
    sd = _meta_sd(release_keys)
    conversion, layout, model = release_conversion(sd, source_name="violetv2_state_dict_keys.tsv")
    assert layout.preset == "violetv2-base" and layout.vtm and layout.mlm and layout.mvm == ("sif",)
    assert set(conversion.state_dict) == set(model.state_dict())
    teacher = [k for k in conversion.dropped if k.startswith("feature_model.")]
    own = [k for k in conversion.dropped if k not in teacher]
    buffers = [k for k in own if k.endswith(("position_ids", "relative_position_index"))]
    assert len(teacher) == 447 and len(buffers) == 1 + 24
    assert sorted(set(conversion.dropped) - set(teacher) - set(buffers)) == [
        "enc_img.emb_odr",
        "fc_mtm.predictions.bias",
    ]
    # every element of the published model (minus teacher and index buffers) is accounted for
    accounted = sum(sd[k].numel() for k in sd if k not in teacher and k not in buffers)
    assert accounted == 225_508_669


def test_v1_full_key_map_on_meta(reference_dir):
    sd = _meta_sd(_tsv(f"{reference_dir}/violet_v1_state_dict_keys.tsv"))
    conversion, layout, model = release_conversion(sd)
    assert layout.preset == "violet-v1-base" and layout.mvm == ("vq_patch",)
    assert model.cfg.swin_out_dim == 768 and set(conversion.state_dict) == set(model.state_dict())


def test_mvm_head_variants_on_meta(reference_dir, release_keys):
    base = [(n, s) for n, s in release_keys if not n.startswith(("fc_mvm.", "feature_model."))]
    variants: dict[str, list] = {}
    for target, name, shape in _tsv(f"{reference_dir}/violetv2_mvm_head_variants.tsv", skip_header=True):
        if "frozen target model" not in name:
            variants.setdefault(target, []).append((name, shape))
    teacher_key = {"3d_feature": ("feature_model.patch_embed.proj.weight", "[128, 3, 2, 4, 4]")}
    expected = {
        "pixel": ("pixel",),
        "hog": ("hog_release",),
        "depth": ("depth",),
        "optical_flow": ("flow",),
        "vq": ("vq",),
        "3d_feature": ("vidswin",),
        "2d_feature": ("sif",),
    }
    assert set(variants) == set(expected)
    for target, keys in variants.items():
        extra = [teacher_key[target]] if target in teacher_key else []
        conversion, layout, model = release_conversion(_meta_sd(base + keys + extra), source_name=target)
        assert layout.mvm == expected[target], target
        assert set(conversion.state_dict) == set(model.state_dict()), target


def test_downstream_heads_on_meta(reference_dir, release_keys):
    base = [
        (n, s) for n, s in release_keys if not n.startswith(("fc_mvm.", "feature_model.", "fc.", "fc_mtm."))
    ]
    heads: dict[str, list] = {}
    for model_name, name, shape in _tsv(
        f"{reference_dir}/violetv2_downstream_head_keys.tsv", skip_header=True
    ):
        if name != "(total keys)":
            heads.setdefault(model_name, []).append((name, shape))
    for model_name, keys in heads.items():
        sd = _meta_sd(base + keys)
        conversion, layout, model = release_conversion(sd, source_name=model_name)
        assert layout.vtm == ("fc.1.weight" in sd) and layout.mlm == (
            "fc_mtm.predictions.decoder.weight" in sd
        )
        assert layout.has_task_embedding == ("emb_task" in sd) and not layout.mvm
        assert set(conversion.state_dict) == set(model.state_dict()), model_name


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(1)
    return VioletModel(VioletConfig.from_name("tiny"), mvm=("sif", "pixel")).eval()


def _outputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(2, 4, 3, 64, 64, generator=g)
    ids = torch.randint(5, 1000, (2, 8), generator=g)
    with torch.no_grad():
        fused = model(video, ids, torch.ones(2, 8))
        return model.vtm_logits(fused), model.mlm_logits(fused), model.mvm_heads["sif"](fused.video_patches)


def test_release_round_trip_small_with_values(tiny_model, tmp_path):
    exported = export_release(tiny_model)
    assert (
        "fc_mtm.predictions.bias" in exported
        and "enc_img.swin.layers.0.blocks.0.attn.relative_position_index" in exported
    )
    path = tmp_path / "release.pth"
    torch.save(exported, path)
    loaded = from_release(path, config=tiny_model.cfg)
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    for a, b in zip(_outputs(tiny_model), _outputs(loaded)):
        assert torch.equal(a, b)


def test_release_safetensors_and_convert_cli(tiny_model, tmp_path):
    from safetensors.torch import save_file

    exported = {k: v.clone().contiguous() for k, v in export_release(tiny_model).items()}
    src = tmp_path / "release.safetensors"
    save_file(exported, str(src))
    out = tmp_path / "converted.ckpt"
    assert convert_main([str(src), str(out), "--preset", "tiny"]) == 0
    module = VioletModule.load_from_checkpoint(out)
    assert sorted(module.hparams.mvm_heads) == ["pixel", "sif"]
    for a, b in zip(_outputs(tiny_model), _outputs(module.model.eval())):
        assert torch.equal(a, b)


def test_bad_checkpoints_fail_loudly(tiny_model):
    good = export_release(tiny_model)
    missing = {k: v for k, v in good.items() if k != "trsfr.layer.1.output.dense.weight"}
    with pytest.raises(ConversionError, match=r"missing.*backbone.fusion.layers.1.ffn_out.weight"):
        from_release(missing, config=tiny_model.cfg)
    extra = {**good, "enc_img.surprise.weight": torch.zeros(3)}
    with pytest.raises(ConversionError, match=r"unexpected source keys.*enc_img.surprise.weight"):
        from_release(extra, config=tiny_model.cfg)
    wrong = {**good, "fc.3.weight": torch.zeros(1, 100)}
    with pytest.raises(
        ConversionError, match=r"shape mismatches: fc.3.weight \(1, 100\) -> vtm_head.fc2.weight"
    ):
        from_release(wrong, config=tiny_model.cfg)
    with pytest.raises(ConversionError, match="matches no preset"):
        from_release(good)
    with pytest.raises(ConversionError, match="not a VIOLET release"):
        detect_layout({"foo": torch.zeros(1)})


def test_unsafe_pickle_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": Evil()}}, f)
    with pytest.raises(ConversionError, match="weights-only"):
        from_release(path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        from_release(tmp_path / "nope.pth")


def _official(swin: VideoSwin) -> dict:
    from violetv2.models.video_swin import WindowAttention3D, relative_position_index

    sd = {f"backbone.{k}": v for k, v in swin.state_dict().items()}
    for name, m in swin.named_modules():
        if isinstance(m, WindowAttention3D):
            sd[f"backbone.{name}.relative_position_index"] = relative_position_index(m.window, m.window)
    sd["cls_head.fc_cls.weight"] = torch.zeros(400, swin.out_dim)
    sd["cls_head.fc_cls.bias"] = torch.zeros(400)
    return {"meta": {"note": "as torch.load gives it"}, "state_dict": sd}


def test_video_swin_full_key_map_on_meta():
    with torch.device("meta"):
        official = VideoSwin(128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), temporal_stride=2)
        ours = VideoSwin(128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), temporal_stride=1)
    sd = _official(official)["state_dict"]
    assert sd["backbone.patch_embed.proj.weight"].shape == (128, 3, 2, 4, 4)  # the 2-frame kernel, reused
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    conversion = convert_state_dict(sd, VIDEO_SWIN_TABLE, shapes)
    assert set(conversion.state_dict) == set(shapes) and len(conversion.dropped) == 24 + 2


def test_video_swin_round_trip_small(tmp_path):
    torch.manual_seed(0)
    stock = VideoSwin(16, (1, 1, 2, 1), (1, 2, 2, 4), (2, 4, 4), temporal_stride=2).eval()
    path = tmp_path / "swin_tiny_k400.pth"
    torch.save(_official(stock), path)
    ours = from_video_swin(path)  # temporal stride 1, as VIOLETv2
    clip = torch.randn(1, 3, 4, 64, 64)
    assert ours(clip).shape[2] == 4 and stock(clip).shape[2] == 2
    same_stride = from_video_swin(path, temporal_stride=2)
    assert torch.allclose(same_stride(clip), stock(clip), atol=1e-6)
    model = VioletModel(VioletConfig.from_name("tiny", swin_depths=(1, 1, 2, 1), swin_window=(2, 4, 4)))
    load_video_swin_into(model, path)
    assert torch.equal(model.backbone.video.swin.patch_embed.proj.weight, stock.patch_embed.proj.weight)
    wrong = VioletModel(VioletConfig.from_name("tiny"))  # depths differ: stage 2 has one block
    with pytest.raises(ConversionError, match="layers.2.blocks.1"):
        load_video_swin_into(wrong, path)


def test_inflate_patch_embed_keeps_static_response():
    w = torch.randn(8, 3, 1, 4, 4)
    inflated = inflate_patch_embed(w, (8, 3, 2, 4, 4))
    frame = torch.randn(1, 3, 1, 4, 4)
    static = frame.repeat(1, 1, 2, 1, 1)
    a = torch.nn.functional.conv3d(frame, w)
    b = torch.nn.functional.conv3d(static, inflated)
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("as_directory", [True, False])
def test_bert_matches_huggingface(tmp_path, as_directory):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    hf_cfg = BertConfig(
        vocab_size=1024,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=160,
    )
    bert = BertForMaskedLM(hf_cfg).eval()
    with torch.no_grad():  # make the MLM output bias non-trivial
        bert.cls.predictions.bias.normal_()
    if as_directory:
        bert.save_pretrained(tmp_path)  # safetensors: the tied decoder weight is stored once
        source = str(tmp_path)
    else:
        source = tmp_path / "bert.bin"
        torch.save(bert.state_dict(), source)
    model = VioletModel(VioletConfig.from_name("tiny")).eval()
    load_bert_into(model, source)
    ids = torch.randint(5, 1000, (2, 9))
    mask = torch.ones(2, 9)
    with torch.no_grad():
        ours_emb = model.backbone.text(ids)
        theirs_emb = bert.bert.embeddings(input_ids=ids)
        assert torch.allclose(ours_emb, theirs_emb, atol=1e-5)
        ours = model.backbone.fusion(ours_emb, mask.bool()[:, None, None, :])
        theirs = bert.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.allclose(ours, theirs, atol=1e-5)
        assert torch.allclose(model.mlm_head(ours), bert.cls(theirs), atol=1e-4)
    # untied copy: the MLM decoder starts equal to the word embeddings but is its own parameter
    assert model.mlm_head.decoder.weight.data_ptr() != model.backbone.text.word_embeddings.weight.data_ptr()


def test_load_into_downstream_model(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "pre.ckpt")
    retrieval = VioletModel(VioletConfig.from_name("tiny"), mlm=False)
    load_into(retrieval, path)
    assert torch.equal(retrieval.vtm_head.fc1.weight, tiny_model.vtm_head.fc1.weight)
    other = VioletModel(VioletConfig.from_name("tiny", hidden_size=32))
    with pytest.raises(ConversionError, match="shape mismatches"):
        load_into(other, path)


def test_bert_base_full_key_map_on_meta():
    from transformers import BertConfig, BertForMaskedLM

    from violetv2.convert.bert import BERT_TABLE, normalise_bert_state_dict

    with torch.device("meta"):
        bert = BertForMaskedLM(BertConfig())  # bert-base-uncased sizes
        model = VioletModel.published(VioletConfig.from_name("violetv2-base"))
    sd = normalise_bert_state_dict(bert.state_dict())
    targets = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith(("backbone.text.", "backbone.fusion.", "mlm_head."))
    }
    conversion = convert_state_dict(sd, BERT_TABLE, targets, source_name="bert-base-uncased (meta)")
    assert set(conversion.state_dict) == set(targets) and len(targets) == 5 + 12 * 16 + 6
