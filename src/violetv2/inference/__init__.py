"""Inference on video files for every task: inputs -> batches, the model's own preprocessing, results.

>>> from violetv2 import VioletModule                                  # doctest: +SKIP
>>> model = VioletModule.from_pretrained("export/")                    # doctest: +SKIP
>>> model.retrieve(["a dog runs"], videos=["a.mp4", "b.gif"], top_k=5)  # doctest: +SKIP

- :mod:`~violetv2.inference.preprocessing`: :class:`Preprocessing`, saved with every checkpoint;
- :mod:`~violetv2.inference.inputs`: paths / bytes / uint8 frames / decoded batches -> batches, in background
  DataLoader workers, unreadable inputs reported as :class:`Failure` records;
- :mod:`~violetv2.inference.index`: :class:`VideoIndex`, a collection encoded once (save / load);
- :mod:`~violetv2.inference.results`: :class:`Hit`, :class:`Answer`, :class:`Caption` in :class:`Results`;
- :mod:`~violetv2.inference.api`: the ``retrieve`` / ``answer`` / ``caption`` methods of every module;
- :mod:`~violetv2.inference.pretrained`: ``save_pretrained`` / ``from_pretrained`` (Hub layout).
"""

from .index import VideoIndex
from .inputs import Failure
from .preprocessing import Preprocessing
from .results import Answer, Caption, Hit, Results

__all__ = ["Answer", "Caption", "Failure", "Hit", "Preprocessing", "Results", "VideoIndex"]
