"""The layer registry (``prospect.layers``): one name, stem, unit and style per layer.

The registry is the one place the exports, readers and stages look layers up, so these
checks guard its consistency: every unit in the vocabulary, unique stems, nodata a value
of the layer's dtype, a style for every exported layer, and unit spellings that map into
the vocabulary and back.
"""

from __future__ import annotations

import numpy as np
import pytest

from prospect import layers
from prospect.errors import UnitsError
from prospect.export import figures, styles
from prospect.export.maps import ROLE_ALIASES, layer_of_role, map_layers
from prospect.export.package import PROJECT_LAYERS
from prospect.export.report import MAP_ORDER


def test_every_layer_has_units_from_the_vocabulary():
    for layer in layers.LAYERS.values():
        assert layer.units in layers.UNITS, layer.name
    assert set(layers.UNIT_ALIASES.values()) <= layers.UNITS


def test_names_and_stems_are_unique_and_files_are_tifs():
    stems = [layer.stem for layer in layers.LAYERS.values()]
    assert len(stems) == len(set(stems))
    assert all(name == layer.name for name, layer in layers.LAYERS.items())
    assert layers.filename("dem_m") == "dem_m.tif"
    assert all(layers.filename(n) == f"{layers.get(n).stem}.tif" for n in layers.LAYERS)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        layers.get("nope")


def test_dtype_and_nodata_are_consistent():
    for layer in layers.LAYERS.values():
        dtype = np.dtype(layer.dtype)
        assert dtype.kind in "uif", layer.name
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            assert info.min <= layer.nodata <= info.max and float(layer.nodata).is_integer(), layer.name
        else:
            assert np.isfinite(np.float32(layer.nodata)), layer.name
        if layer.categorical:
            assert dtype.kind == "u", layer.name
        if layer.style_range is not None:
            assert layer.style_range[0] < layer.style_range[1], layer.name
    assert layers.get("ice_stability_class").nodata == 255 and layers.get("hillshade").nodata == 0


def test_a_layer_with_a_bad_unit_or_nodata_is_refused():
    with pytest.raises(ValueError, match="vocabulary"):
        layers.Layer("x", "furlong", "x", "terrain")
    with pytest.raises(ValueError, match="uint8"):
        layers.Layer("x", "1", "x", "terrain", dtype="uint8", nodata=-9999.0)
    with pytest.raises(ValueError, match="uint8"):
        layers.Layer("x", "1", "x", "terrain", dtype="uint8", nodata=256)


def test_every_exported_layer_has_a_style_a_figure_style_a_project_row_and_a_report_slot():
    exported = map_layers()
    assert list(exported) == [layer.name for layer in layers.LAYERS.values() if layer.exported]
    project_keys = [row[0] for row in PROJECT_LAYERS]
    for name in exported:
        renderer = styles.renderer_type(name)
        assert name in styles.RASTER_RAMPS or renderer != "singlebandpseudocolor", name
        assert name in figures.STYLES, name
        assert name in project_keys, name
        assert name in MAP_ORDER, name
    for name in list(styles.RASTER_RAMPS) + list(styles.RENDERERS) + list(figures.STYLES) + list(MAP_ORDER):
        assert name in layers.LAYERS, name  # no style for a layer the registry does not know


def test_project_titles_carry_the_registry_units():
    titles = {row[0]: row[2] for row in PROJECT_LAYERS}
    assert titles["he3_ppb"] == "Helium-3 [ppb]" and titles["slope_deg"] == "Slope [deg]"
    assert titles["dem_m"] == "Elevation [m]" and titles["longest_darkness_h"] == "Longest darkness [h]"
    assert titles["psr_fraction"] == "PSR fraction" and titles["psr_mask"] == "PSR mask"
    groups = {row[0]: row[1] for row in PROJECT_LAYERS}
    assert groups["psr_mask"] == groups["psr_fraction"] == "Illumination"


def test_roles_map_onto_exported_layers():
    assert layer_of_role("dem") == "dem_m" and layer_of_role("ice_class") == "ice_stability_class"
    assert layer_of_role("psr_fraction") == "psr_fraction" and layer_of_role("psr_mask") == "psr_mask"
    assert layer_of_role("craters") is None and layer_of_role("coverage") is None  # no map of its own
    assert all(name in map_layers() for name in ROLE_ALIASES.values())


def test_psr_mask_and_psr_fraction_are_distinct_layers():
    mask, fraction = layers.get("psr_mask"), layers.get("psr_fraction")
    assert mask.stem != fraction.stem and mask.long_name != fraction.long_name
    assert mask.stage == "illumination" and fraction.stage == "sites"


@pytest.mark.parametrize("spelling", sorted(layers.UNIT_ALIASES))
def test_normalise_units_maps_every_alias_into_the_vocabulary(spelling):
    units = layers.normalise_units(spelling, "test")
    assert units == layers.UNIT_ALIASES[spelling] and units in layers.UNITS
    assert layers.normalise_units(f'  "{spelling.upper()}" ', "test") == units  # quotes, case and spaces
    assert layers.normalise_units(units, "test") == units  # the canonical spelling round-trips


def test_unknown_units_are_refused_in_one_line():
    with pytest.raises(UnitsError, match=r"label\.lbl: unknown units 'furlong'"):
        layers.normalise_units("furlong", "label.lbl")


def test_unit_factor_converts_compatible_units_and_refuses_others():
    assert layers.unit_factor("m", "m") == 1.0
    assert layers.unit_factor("%", "1") == 0.01 and layers.unit_factor("cm", "m") == 0.01
    assert layers.unit_factor("km", "m") == 1000.0 and layers.unit_factor("m", "km") == 0.001
    for units, to in (("m", "deg"), ("ppm", "ppb"), ("K", "h"), ("1", "%")):
        with pytest.raises(UnitsError, match="cannot be converted"):
            layers.unit_factor(units, to)


def test_readers_use_the_registry_vocabulary():
    from prospect.io import readers

    assert readers.normalise_units is layers.normalise_units
    assert not hasattr(readers, "UNIT_ALIASES")  # one table, in prospect.layers
