"""The package root's public names are pinned."""

from __future__ import annotations

import wagerwire


def test_package_root_exports() -> None:
    assert sorted(wagerwire.__all__) == [
        "ClientError", "ServerError", "WagerwireError", "__version__",
    ]
    for name in wagerwire.__all__:
        assert hasattr(wagerwire, name)
