"""Terrain derivatives of lunar DEMs: slope, aspect, hillshade and roughness at stated baselines.

Every function takes a DEM DataArray and returns DataArrays on the same grid, with
ground distances computed on the lunar sphere (:mod:`prospect.terrain.metric`) and the
baseline of every slope and roughness value in its attributes.
"""

from prospect.terrain.metric import GroundMetric, ground_metric, metric_of
from prospect.terrain.roughness import rms_deviation, terrain_ruggedness
from prospect.terrain.stencil import MIN_DEM_PX, check_dem, has_valid_data
from prospect.terrain.surface import (
    LOLA_BASELINES_M,
    aspect_deg,
    check_baseline,
    check_method,
    hillshade,
    slope_baselines,
    slope_deg,
)

__all__ = [
    "LOLA_BASELINES_M",
    "MIN_DEM_PX",
    "GroundMetric",
    "aspect_deg",
    "check_baseline",
    "check_dem",
    "check_method",
    "ground_metric",
    "has_valid_data",
    "hillshade",
    "metric_of",
    "rms_deviation",
    "slope_baselines",
    "slope_deg",
    "terrain_ruggedness",
]
