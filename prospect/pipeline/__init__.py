"""Pipelines: definitions (``spec``), the stages (``stages``: every stage's file I/O, one
signature, called by ``prospect run`` and the ``prospect`` commands alike), the runner
with its cache (``runner``) and what a stage's code is (``digest``)."""
