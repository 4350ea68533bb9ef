"""The vendored Swagger UI is what its README says: the version, and each upstream file
unchanged (by SHA-256), with nothing else in the folder but CreditML's starter script."""

from __future__ import annotations

import hashlib
import re

from creditml.api.routes.docs import MEDIA_TYPES, SWAGGER_UI_DIR, assets

README = SWAGGER_UI_DIR / "README.md"
OWN_FILES = {"README.md", "swagger-init.js"}


def _listed_hashes() -> dict[str, str]:
    rows = re.findall(r"^\| (\S+) \| ([0-9a-f]{64}) \|$", README.read_text(), re.MULTILINE)
    return dict(rows)


def test_each_upstream_file_matches_the_hash_in_the_readme() -> None:
    listed = _listed_hashes()
    assert listed, "the README's table of hashes was not found"
    for name, digest in listed.items():
        assert hashlib.sha256((SWAGGER_UI_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_folder_holds_the_listed_files_and_the_starter_script_only() -> None:
    present = {path.name for path in SWAGGER_UI_DIR.iterdir()}
    assert present == set(_listed_hashes()) | OWN_FILES
    # The license travels with the code it covers.
    assert {"LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"} <= present


def test_the_readme_names_the_bundles_version() -> None:
    (version,) = re.findall(r"swagger-ui-dist (\d+\.\d+\.\d+)", README.read_text())
    bundle = (SWAGGER_UI_DIR / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    assert f'PACKAGE_VERSION:"{version}"' in bundle


def test_served_names_carry_a_hash_of_the_content() -> None:
    served = assets()
    assert {asset.name for asset in served.values()} == set(MEDIA_TYPES)
    for name, asset in served.items():
        stem, digest, suffix = name.rsplit(".", 2)
        assert f"{stem}.{suffix}" == asset.name
        assert hashlib.sha256(asset.content).hexdigest().startswith(digest)
        assert len(digest) == 12
