"""Candidate base sites: constraints, features, multi-criteria and learned scoring, uncertainty."""
