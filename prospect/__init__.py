"""prospect: an open lunar resource-prospecting pipeline.

Data flows one way: manifests and readers (:mod:`prospect.io`) -> analysis grid
(:mod:`prospect.grid`) -> terrain -> illumination -> resources -> sites -> exports.
:mod:`prospect.lunar` is the only module that knows the Moon.

The library's entry points are importable from here (``from prospect import
AnalysisGrid, open_product, slope_deg``). They are imported lazily, on first use
(PEP 562), so ``import prospect`` stays cheap and loads neither dask nor rasterio:

- grid and Moon: :class:`AnalysisGrid`, :func:`resample`, :func:`on_grid`,
  :class:`LunarCRS`, :func:`lunar_crs`;
- reading: :func:`open_product`;
- terrain: :func:`slope_deg`, :func:`aspect_deg`, :func:`hillshade`,
  :func:`rms_deviation`, :func:`terrain_ruggedness`;
- illumination: :func:`horizon_angles`, :func:`illumination_tiles`,
  :func:`illumination_products`;
- resources: :func:`ice_favourability`, :func:`ice_monte_carlo`, :func:`he3_maps`,
  :func:`rasterize_binned`;
- sites: :func:`rank_sites`;
- pipelines: :func:`load_pipeline`, :func:`run_pipeline`;
- errors: :class:`ProspectError` (every error meant for users);
- modules: :mod:`prospect.config` (documented parameters), :mod:`prospect.layers`
  (the layer registry).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "AnalysisGrid": "prospect.grid",
    "resample": "prospect.grid",
    "on_grid": "prospect.grid",
    "LunarCRS": "prospect.lunar",
    "lunar_crs": "prospect.lunar",
    "ProspectError": "prospect.errors",
    "open_product": "prospect.io.readers",
    "slope_deg": "prospect.terrain.surface",
    "aspect_deg": "prospect.terrain.surface",
    "hillshade": "prospect.terrain.surface",
    "rms_deviation": "prospect.terrain.roughness",
    "terrain_ruggedness": "prospect.terrain.roughness",
    "horizon_angles": "prospect.illumination.horizon",
    "illumination_tiles": "prospect.illumination.maps",
    "illumination_products": "prospect.illumination.products",
    "ice_favourability": "prospect.resources.ice",
    "ice_monte_carlo": "prospect.resources.ice",
    "he3_maps": "prospect.resources.he3",
    "rasterize_binned": "prospect.resources.binned",
    "rank_sites": "prospect.sites.rank",
    "load_pipeline": "prospect.pipeline.spec",
    "run_pipeline": "prospect.pipeline.runner",
}
#: Submodules reachable as attributes (``prospect.config``, ``prospect.layers``).
_SUBMODULES = ("config", "layers")

# literal, for linters and readers; tests/test_api.py checks it lists exactly _EXPORTS and _SUBMODULES
__all__ = [
    "AnalysisGrid",
    "LunarCRS",
    "ProspectError",
    "__version__",
    "aspect_deg",
    "config",
    "he3_maps",
    "hillshade",
    "horizon_angles",
    "ice_favourability",
    "ice_monte_carlo",
    "illumination_products",
    "illumination_tiles",
    "layers",
    "load_pipeline",
    "lunar_crs",
    "on_grid",
    "open_product",
    "rank_sites",
    "rasterize_binned",
    "resample",
    "rms_deviation",
    "run_pipeline",
    "slope_deg",
    "terrain_ruggedness",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from prospect import config, layers
    from prospect.errors import ProspectError
    from prospect.grid import AnalysisGrid, on_grid, resample
    from prospect.illumination.horizon import horizon_angles
    from prospect.illumination.maps import illumination_tiles
    from prospect.illumination.products import illumination_products
    from prospect.io.readers import open_product
    from prospect.lunar import LunarCRS, lunar_crs
    from prospect.pipeline.runner import run_pipeline
    from prospect.pipeline.spec import load_pipeline
    from prospect.resources.binned import rasterize_binned
    from prospect.resources.he3 import he3_maps
    from prospect.resources.ice import ice_favourability, ice_monte_carlo
    from prospect.sites.rank import rank_sites
    from prospect.terrain.roughness import rms_deviation, terrain_ruggedness
    from prospect.terrain.surface import aspect_deg, hillshade, slope_deg


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name here."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
