"""Pulumi program: builds this stack's role, the shared platform or one experiment, and exports its outputs."""

import pulumi
import settings
from experiment_stack import Experiment, ExperimentArgs
from naming import StackNames
from platform_stack import Platform, PlatformArgs

config = settings.load()
names = StackNames(project=config.project, stack=config.stack)

if isinstance(config, settings.PlatformSettings):
    stack = Platform(
        "platform",
        PlatformArgs(
            project=config.project,
            region=config.region,
            names=names,
            tensorboard=config.tensorboard,
            keep_image_versions=config.keep_image_versions,
            image_retention_days=config.image_retention_days,
            untagged_image_days=config.untagged_image_days,
            cloud_build_service_account=config.cloud_build_service_account,
        ),
    )
else:
    stack = Experiment(
        "experiment",
        ExperimentArgs(
            project=config.project,
            region=config.region,
            names=names,
            platform_stack=config.platform_stack,
            protect_bucket=config.protect_bucket,
            noncurrent_version_days=config.noncurrent_version_days,
            checkpoint_retention_days=config.checkpoint_retention_days,
            soft_delete_days=config.soft_delete_days,
            tensorboard=config.tensorboard,
            launcher=config.launcher,
        ),
    )

for key, value in stack.outputs.items():
    pulumi.export(key, value)
