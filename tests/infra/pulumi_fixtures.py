"""Session fixtures: the platform stack and two experiment stacks, each deployed once under mocks."""

from __future__ import annotations

import pytest
from pulumi_harness import PLATFORM_STACK, Deployment, deploy, experiment_config, platform_config


@pytest.fixture(scope="session")
def platform() -> Deployment:
    return deploy("platform", platform_config())


@pytest.fixture(scope="session")
def platform_without_tensorboard() -> Deployment:
    return deploy("platform", platform_config(tensorboard="false"))


@pytest.fixture(scope="session")
def experiment(platform: Deployment) -> Deployment:
    return deploy("exp-coco", experiment_config(), {PLATFORM_STACK: platform.outputs})


@pytest.fixture(scope="session")
def other_experiment(platform: Deployment) -> Deployment:
    return deploy("exp-voc", experiment_config(launcher="user:ana@example.com"), {PLATFORM_STACK: platform.outputs})
