"""How fast a tiny transformer learns the option binding of the options-in-the-prompt layout, text only.

    python bench/prompt_binding.py data/synthetic                      # 2 layers, 1000 and 4000 steps
    python bench/prompt_binding.py data/synthetic --layers 4 --steps 2000

TGIF-Action's prompt (``[CLS] question [SEP] option 0: ... [MASK] [SEP]``, :func:`violetv2.data.layouts.mc_prompt`)
asks the MLM head for the *index* of the right option: the model must tie each option's words to the digit
before it. This measures that part alone, with the video taken out: the synthetic benchmark's TGIF-Action
questions are rewritten to name their answer (``which option is move left ?``), so the right index is in the
text, and a plain ``torch.nn.TransformerEncoder`` of the tiny preset's size (hidden 64, 2 heads, FFN 128, learned
absolute positions, the prompt's tokenizer) is trained on them from scratch: batch 16, AdamW lr 1e-3, 10%
warm-up then linear decay, the options permuted anew for every sample. Prints test accuracy over the run
(chance 20%). Deterministic (seed 0, one thread).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn


def oracle_questions(path: Path) -> list[tuple[str, list[str], int]]:
    from violetv2.data.readers import READERS

    items = []
    for r in READERS["tgif_action_csv"](path):
        items.append((f"which option is {r.options[r.label]} ?", list(r.options), int(r.label)))
    return items


class PlainEncoder(nn.Module):
    def __init__(self, vocab: int, layers: int, hidden: int = 64, heads: int = 2, ffn: int = 128) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, hidden)
        self.positions = nn.Embedding(128, hidden)
        nn.init.normal_(self.words.weight, std=0.1)
        nn.init.normal_(self.positions.weight, std=0.1)
        self.norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, ffn, dropout=0.0, activation="gelu", batch_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, pad: int) -> torch.Tensor:
        x = self.norm(self.words(ids) + self.positions(torch.arange(ids.shape[1])))
        return self.out(self.layers(x, src_key_padding_mask=ids == pad))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "root", type=Path, help="a synthetic benchmark (violet synth ROOT, or make demo's data/synthetic)"
    )
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[1000, 4000], help="run lengths (one run each)"
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument(
        "--max-text-len", type=int, default=40, help="L of the layout (the quickstart config's)"
    )
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from violetv2.data.layouts import mc_prompt
    from violetv2.data.synthetic import SyntheticPaths
    from violetv2.tasks.base import warmup_linear_decay

    torch.set_num_threads(1)
    paths = SyntheticPaths.at(args.root)
    tok = AutoTokenizer.from_pretrained(str(paths.root / "tokenizer"))
    train, test = oracle_questions(paths.action_train), oracle_questions(paths.action_test)
    digits = tok.convert_tokens_to_ids([str(i) for i in range(5)])

    def encode(items, rng=None):
        ids, labels = [], []
        for question, options, label in items:
            if rng is not None:
                order = rng.permutation(len(options))
                options, label = [options[i] for i in order], int(np.argmax(order == label))
            enc = mc_prompt(tok, question, options, label, args.max_text_len)
            ids.append(enc.ids)
            labels.append(enc.labels)
        return torch.stack(ids), torch.stack(labels)

    test_ids, test_labels = encode(test)
    at_mask = test_labels != -100
    test_target = torch.tensor([digits.index(t) for t in test_labels[at_mask].tolist()])

    for steps in args.steps:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = PlainEncoder(len(tok), args.layers)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, warmup_linear_decay(steps, 0.1)
        )  # the task modules' schedule
        curve, order = [], []
        for step in range(1, steps + 1):
            if len(order) < 16:
                order = list(rng.permutation(len(train)))
            ids, labels = encode([train[order.pop()] for _ in range(16)], rng)
            loss = nn.functional.cross_entropy(model(ids, tok.pad_token_id).flatten(0, 1), labels.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % max(1, steps // 4) == 0 or step == steps:
                with torch.no_grad():
                    logits = model(test_ids, tok.pad_token_id)[at_mask][:, digits]
                acc = 100.0 * (logits.argmax(1) == test_target).float().mean().item()
                curve.append({"step": step, "test_acc": round(acc, 1)})
        print(
            json.dumps({"layers": args.layers, "steps": steps, "test_questions": len(test), "curve": curve})
        )


if __name__ == "__main__":
    main()
