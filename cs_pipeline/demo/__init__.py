"""Demo source data: a deterministic generator writing the contract's `files` layout."""

from cs_pipeline.demo.generator import DemoSpec, DemoSummary, generate

__all__ = ["DemoSpec", "DemoSummary", "generate"]
