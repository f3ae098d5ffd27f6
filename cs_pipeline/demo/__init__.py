"""Demo source data: a deterministic generator writing the contract's `files` layout.

`from cs_pipeline.demo import DemoSpec, generate` works; the generator module is imported on
first use, so that `python -m cs_pipeline.demo.generator` does not import it twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cs_pipeline.demo.generator import DemoSpec, DemoSummary, generate

__all__ = ["DemoSpec", "DemoSummary", "generate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cs_pipeline.demo import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
