"""The exception hierarchy of prospect.

Every failure a user can cause (a wrong path, a corrupt file, a label that lies, an
Earth CRS, a bad manifest or config key, a checksum mismatch) raises a subclass of
:class:`ProspectError`. The CLI turns any of them into one line on stderr and exit
code 2; anything else is a bug and keeps its traceback.

Messages say what was wrong, where (file and, where known, line or key), and what to
do instead.
"""

from __future__ import annotations


class ProspectError(Exception):
    """Base class of every error a user can cause and fix."""


class InputNotFoundError(ProspectError):
    """A path or manifest id that does not exist."""


class FormatError(ProspectError):
    """A file that cannot be read as the format it claims (unsupported or unknown)."""


class LabelError(FormatError):
    """A PDS/ISIS label that is missing, truncated, unparsable or self-contradictory."""


class CorruptProductError(FormatError):
    """A data file whose size or content disagrees with its label (truncated, padded)."""


class UnitsError(ProspectError):
    """A unit string prospect does not know, or units that contradict the manifest."""


class CRSError(ProspectError):
    """A missing or unusable coordinate reference system."""


class EarthCRSError(CRSError):
    """A file that declares an Earth CRS (WGS84, EPSG:4326, ...) for lunar data."""


class ManifestError(ProspectError):
    """A data manifest that fails its schema or names an unknown product."""


class ChecksumError(ProspectError):
    """A file whose checksum differs from the one its manifest publishes."""


class UnverifiedFileError(ChecksumError):
    """Strict mode refuses a file whose manifest publishes no checksum."""


class FetchError(ProspectError):
    """A download or mirror lookup that failed."""


class CachePathError(ProspectError):
    """A path that would escape the cache directory (e.g. ``../`` in a file name)."""


class ConfigError(ProspectError):
    """A bad configuration or pipeline key, value or unit."""


class GridError(ProspectError):
    """An analysis-grid definition that is incomplete or inconsistent."""


class OutputPathError(ProspectError):
    """An output cannot be written where asked (missing directory, not writable)."""


class ConstraintError(ProspectError):
    """Site constraints that no candidate passes (the message names the binding one)."""
