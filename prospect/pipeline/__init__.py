"""Pipelines: definitions (``spec``), the stage runner with its cache (``runner``)."""
