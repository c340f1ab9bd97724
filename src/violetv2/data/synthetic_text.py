"""Templated captions, questions and answers of the synthetic benchmark, from a :class:`ClipSpec`.

Every function takes the clip's own text generator, so the text of a clip does not depend on other clips.
Which questions need time (see the README section of :mod:`violetv2.data.synthetic`):

* ``order``: answerable only from the order of events (what happens first / last, colour at the start vs.
  the end of a clip that changes colour);
* ``motion``: answerable only from the direction of change between frames (which way the shape goes,
  appear vs. disappear, move left vs. move right); a model that sees the frames as an unordered set cannot
  tell these apart;
* ``static``: answerable from any single frame where the shape is visible (its shape, an unchanging colour).
"""

from __future__ import annotations

import numpy as np

from violetv2.data.synthetic_render import COLOURS, DIRECTIONS, SHAPES, Action, ClipSpec

__all__ = [
    "ANSWER_WORDS",
    "VERB_WORDS",
    "caption",
    "fib_item",
    "mc_action",
    "mc_transition",
    "frameqa_items",
    "msvdqa_items",
    "base_phrase",
]

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
VERB_WORDS: dict[str, str] = {
    "move": "move",
    "bounce": "bounce",
    "appear": "appear",
    "disappear": "disappear",
    "change": "change",
}
# Every open-ended / fill-in-the-blank answer is one of these words (each is a single word piece).
ANSWER_WORDS: tuple[str, ...] = (*SHAPES, *COLOURS, *DIRECTIONS, *VERB_WORDS.values())
BLANKABLE = set(SHAPES) | set(COLOURS) | set(DIRECTIONS)


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _direction_words(direction: str, rng: np.random.Generator) -> str:
    if direction in ("left", "right"):
        return _pick(rng, [direction, f"to the {direction}"])
    return _pick(rng, [direction, f"{direction}wards"])


def verb_phrase(action: Action, rng: np.random.Generator) -> str:
    """Third-person description of one action (``"moves to the left"``, ``"turns green"``)."""
    d, c = action.direction, action.colour
    if action.kind == "move":
        return f"{_pick(rng, ['moves', 'slides', 'goes'])} {_direction_words(d, rng)}"
    if action.kind == "bounce":
        return _pick(rng, [f"bounces {d} and back", f"moves {d} and bounces back"])
    if action.kind == "appear":
        return _pick(rng, ["appears", "shows up", "pops into view"])
    if action.kind == "disappear":
        return _pick(rng, ["disappears", "vanishes", "goes away"])
    if action.kind == "change":
        return _pick(rng, [f"turns {c}", f"changes colour to {c}", f"becomes {c}"])
    raise ValueError(f"unknown action kind {action.kind!r}")


def base_phrase(action: Action) -> str:
    """Option text of an action in the TGIF-QA style (``"move left"``, ``"turn green"``)."""
    if action.kind in ("move", "bounce"):
        return f"{action.kind} {action.direction}"
    if action.kind == "change":
        return f"turn {action.colour}"
    return action.kind


def caption(spec: ClipSpec, rng: np.random.Generator, commas: bool = True) -> str:
    """A lower-case caption of the whole clip, e.g. ``"a red circle appears then moves to the left"``.

    Args:
        spec: The clip.
        rng: The clip's text generator.
        commas: Allow templates with a comma (left out for fill-in-the-blank sentences).
    """
    article = _pick(rng, ["an" if spec.colour[0] in "aeiou" else "a", "the", "one"])
    subject = f"{article} {spec.colour} {spec.shape}"
    if rng.random() < 0.3:
        words = ["plain", "dark"] if spec.background == "plain" else ["noisy", "grainy"]
        subject += f" on a {_pick(rng, words)} background"
    first, second = (verb_phrase(a, rng) for a in spec.actions)
    forms = [f"{subject} {first} then {second}", f"{subject} {first} and then {second}"]
    forms.append(f"{subject} {second} after it {first}")
    if commas:
        forms += [f"{subject} {first}, then {second}", f"first {subject} {first}, then it {second}"]
    return _pick(rng, forms)


def fib_item(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, str]:
    """A caption with one shape / colour / direction word replaced by ``_____``, and that word."""
    words = caption(spec, rng, commas=False).split(" ")
    slots = [i for i, w in enumerate(words) if w in BLANKABLE]
    slot = slots[int(rng.integers(len(slots)))]
    answer, words[slot] = words[slot], "_____"
    return " ".join(words), answer


def _all_phrases() -> list[str]:
    phrases = [f"{kind} {d}" for kind in ("move", "bounce") for d in DIRECTIONS]
    return phrases + ["appear", "disappear"] + [f"turn {c}" for c in COLOURS]


def _mirrors(action: Action, spec: ClipSpec) -> list[str]:
    """Options a time-blind model confuses with ``action`` (same frames, other order / direction)."""
    if action.kind in ("move", "bounce"):
        other = "bounce" if action.kind == "move" else "move"
        return [f"{action.kind} {OPPOSITE[action.direction]}", f"{other} {action.direction}"]
    if action.kind == "appear":
        return ["disappear"]
    if action.kind == "disappear":
        return ["appear"]
    return [f"turn {spec.colour}"]


def _options(
    answer: str, wanted: list[str], spec: ClipSpec, rng: np.random.Generator
) -> tuple[list[str], int]:
    """Five shuffled options: the answer, the ``wanted`` distractors, then random false ones; and its index."""
    true = {base_phrase(a) for a in spec.actions}
    chosen = list(dict.fromkeys(w for w in wanted if w != answer))[:4]
    rest = [p for p in _all_phrases() if p not in true and p not in chosen and p != answer]
    chosen += [rest[i] for i in rng.permutation(len(rest))[: 4 - len(chosen)]]
    options = [answer, *chosen]
    order = rng.permutation(5)
    return [options[i] for i in order], int(np.argmax(order == 0))


def _false_mirrors(action: Action, spec: ClipSpec) -> list[str]:
    true = {base_phrase(a) for a in spec.actions}
    return [m for m in _mirrors(action, spec) if m not in true]


def mc_action(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, list[str], int]:
    """TGIF-Action-style 5-way question: what the shape does, against four random actions it does not do.

    As in the TGIF-QA Action files, whose distractors are other actions drawn at random, not ones chosen to be
    confusable; a distractor can still be a mirror (``move right`` for ``move left``), so some questions need
    the motion. TGIF-Transition (:func:`mc_transition`) keeps the confusable distractors."""
    action = spec.actions[int(rng.integers(2))]
    options, label = _options(base_phrase(action), [], spec, rng)
    return f"What does the {spec.shape} do ?", options, label


def mc_transition(spec: ClipSpec, rng: np.random.Generator) -> tuple[str, list[str], int]:
    """TGIF-Transition-style 5-way question (``order``): what it does first / last; the other event is an option."""
    index = int(rng.integers(2))
    action, other = spec.actions[index], spec.actions[1 - index]
    wanted = [base_phrase(other), *_false_mirrors(action, spec)]
    options, label = _options(base_phrase(action), wanted, spec, rng)
    return f"What does the {spec.shape} do {'first' if index == 0 else 'last'} ?", options, label


def _directional(spec: ClipSpec) -> list[int]:
    return [i for i, a in enumerate(spec.actions) if a.kind in ("move", "bounce")]


def _direction_question(spec: ClipSpec, rng: np.random.Generator, style: str) -> tuple[str, str] | None:
    moving = _directional(spec)
    if not moving:
        return None
    index = moving[int(rng.integers(len(moving)))]
    when = "" if len(moving) == 1 else (" first" if index == 0 else " last")
    verb = "which way does" if style == "tgif" else "which direction does"
    return f"{verb} the {spec.shape} go{when}", str(spec.actions[index].direction)


def _colour_question(spec: ClipSpec, rng: np.random.Generator, word: str) -> tuple[str, str]:
    at_end = bool(rng.integers(2))
    when = "at the end" if at_end else "at first"
    return f"what {word} is the {spec.shape} {when}", spec.final_colour if at_end else spec.colour


def frameqa_items(spec: ClipSpec, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """TGIF-FrameQA-style ``(question, answer, type)`` rows; type 0 object, 2 colour, 3 location."""
    shape_q = _pick(rng, ["what shape is shown", "what shape is on the screen", "what kind of shape is it"])
    items = [(f"{shape_q} ?", spec.shape, 0)]
    question, answer = _colour_question(spec, rng, "colour")
    items.append((f"{question} ?", answer, 2))
    direction = _direction_question(spec, rng, "tgif")
    if direction is not None:
        items.append((f"{direction[0]} ?", direction[1], 3))
    return items


def _appearance_question(spec: ClipSpec) -> tuple[str, str] | None:
    kinds = [a.kind for a in spec.actions if a.kind in ("appear", "disappear")]
    if len(kinds) != 1:
        return None
    return f"does the {spec.shape} appear or disappear", kinds[0]


def msvdqa_items(spec: ClipSpec, rng: np.random.Generator) -> list[tuple[str, str]]:
    """MSVD-QA-style ``(question, one-word answer)`` pairs: one order, one motion, one static/colour."""
    index = int(rng.integers(2))
    items = [
        (
            f"what does the {spec.shape} do {'first' if index == 0 else 'last'}?",
            VERB_WORDS[spec.actions[index].kind],
        )
    ]
    motion = [q for q in (_appearance_question(spec), _direction_question(spec, rng, "msvd")) if q]
    if motion:
        question, answer = motion[int(rng.integers(len(motion)))]
        items.append((f"{question}?", answer))
    if rng.random() < 0.5:
        question, answer = _colour_question(spec, rng, "color")
        items.append((f"{question}?", answer))
    else:
        items.append((f"what shape is the {spec.colour} object?", spec.shape))
    return items
