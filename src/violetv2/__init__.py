"""violetv2: end-to-end video-language pre-training with masked visual modeling (VIOLETv2).

``violetv2.config`` and ``violetv2.models`` import without Lightning; ``VioletModule`` (the LightningModule
base every task subclasses) is imported lazily on first access.
"""

from __future__ import annotations

from typing import Any

from .config import VioletConfig

__version__ = "0.1.0"
__all__ = ["VioletConfig", "VioletModule", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "VioletModule":
        from .tasks.base import VioletModule

        return VioletModule
    raise AttributeError(f"module 'violetv2' has no attribute {name!r}")
