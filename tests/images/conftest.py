"""Fixtures for the image tests: the images scripts/build-images.sh builds (cached layers: seconds when nothing
changed). Without podman and buildah the tests skip locally and fail in CI (or with COTLAB_REQUIRE_IMAGES=1)."""

from __future__ import annotations

import pytest

from .podman import built_images


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """{"operator": ref, "trainer": ref}, built from this checkout."""
    return built_images("operator", "trainer")
