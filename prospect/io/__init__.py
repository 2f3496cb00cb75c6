"""Edges of the pipeline: product readers, data manifests, fetching, writers."""
