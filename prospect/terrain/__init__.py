"""Terrain derivatives of lunar DEMs: slope, aspect, hillshade and roughness at stated baselines.

Every function takes a DEM DataArray and returns DataArrays on the same grid, with
ground distances computed on the lunar sphere (:mod:`prospect.terrain.metric`) and the
baseline of every slope and roughness value in its attributes.
"""

from prospect.terrain.metric import GroundMetric, ground_metric, metric_of
from prospect.terrain.roughness import rms_deviation, terrain_ruggedness
from prospect.terrain.surface import LOLA_BASELINES_M, aspect_deg, hillshade, slope_baselines, slope_deg

__all__ = [
    "LOLA_BASELINES_M",
    "GroundMetric",
    "aspect_deg",
    "ground_metric",
    "hillshade",
    "metric_of",
    "rms_deviation",
    "slope_baselines",
    "slope_deg",
    "terrain_ruggedness",
]
