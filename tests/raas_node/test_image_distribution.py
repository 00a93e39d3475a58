"""Shipping the images to a lab without a public registry (issue 18, item 1): `push_image` refuses
a destination it cannot push to with a sentence; `save_archive` names an image podman does not
have. That an archive keeps the image's name and runs is shown on a real containerd: the real
kubelet's tests import the job image that way and run the operator's job pod from it
(tests/controlplane/real_kubelet.py, `RealKubelet.import_podman_image`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raas_node.runner.image_build import ImageBuildError, push_image, save_archive


@pytest.mark.parametrize(
    "destination",
    [
        "docker://registry.lab/raas/raas-api:0.1.0",  # a transport, not a registry
        "raas-api:0.1.0",  # no registry
        "registry.lab/raas/raas-api",  # no tag
        "registry.lab/raas api:0.1.0",  # a space
        "registry.lab/raas/raas-api:0.1.0; rm -rf /",
    ],
)
def test_a_destination_that_is_not_registry_name_and_tag_is_refused_with_an_example(destination: str) -> None:
    example = "give registry/name:tag, e.g. registry.lab:5000/raas/raas-api:0.1.0"
    with pytest.raises(ImageBuildError, match=re.escape(example)):
        push_image("localhost/raas-api:0.1.0", destination)


def test_saving_an_image_podman_does_not_have_says_which(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match=re.escape("podman save localhost/raas-nothing:0")):
        save_archive("localhost/raas-nothing:0", tmp_path / "nothing.tar")
