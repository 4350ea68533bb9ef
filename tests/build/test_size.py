"""Each function fits Lambda's size limit together with its layers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.build.conftest import Build, files_under, source_function_names

# Lambda's limit on a function's code plus all its layers, unzipped: "250 MB" in the docs,
# 262,144,000 bytes in the API's own error message.
LIMIT_BYTES = 262_144_000


def unzipped_size(folder: Path) -> int:
    """What `folder` weighs once Lambda has unzipped it: the sum of its files' sizes."""
    return sum(path.lstat().st_size for path in files_under(folder))


@pytest.mark.parametrize("function", source_function_names())
def test_function_and_its_layers_fit_lambdas_unzipped_limit(build: Build, function: str) -> None:
    parts = {function: unzipped_size(build.functions[function])}
    parts |= {
        layer: unzipped_size(build.layers[layer].parent) for layer in build.layers_of(function)
    }
    total = sum(parts.values())
    assert total <= LIMIT_BYTES, f"{function} unzips to {total:,} bytes > {LIMIT_BYTES:,}: {parts}"


def test_the_ml_layer_is_measured_with_its_real_weight(build: Build) -> None:
    # scikit-learn, scipy and numpy cannot weigh under 100 MB: a measurement below that is
    # looking at the wrong folder or not counting files, and the limit test above means nothing.
    assert unzipped_size(build.layers["MlLayer"]) > 100_000_000


def test_sizes_are_exact_because_nothing_is_a_link(build: Build) -> None:
    # A link would be zipped as its target's bytes (or break on Lambda): neither is counted.
    shipped = [*build.functions.values(), *(layer.parent for layer in build.layers.values())]
    links = [
        Path(parent) / name
        for folder in shipped
        for parent, folders, files in os.walk(folder)
        for name in [*folders, *files]
        if (Path(parent) / name).is_symlink()
    ]
    assert links == []


def test_unzipped_size_counts_every_file(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "b.pyc").write_bytes(b"y" * 234)
    assert unzipped_size(tmp_path) == 1234


def test_a_missing_build_fails_telling_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"run `make build` first"):
        _ = Build(tmp_path / "build").functions
