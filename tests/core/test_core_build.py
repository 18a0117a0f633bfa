"""The compiled core is built, importable and of the package's version."""

from __future__ import annotations

import edgetrain


def test_core_is_built_and_matches_package_version() -> None:
    from edgetrain import _core

    assert _core.version() == edgetrain.__version__
    assert edgetrain.core_version() == edgetrain.__version__
