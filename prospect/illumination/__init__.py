"""Illumination building blocks: horizon maps (then Sun / Earth visibility, permanent shadow).

See ``docs/science.md`` section 3.
"""

from prospect.illumination.horizon import horizon_angles, horizon_brute_force

__all__ = ["horizon_angles", "horizon_brute_force"]
