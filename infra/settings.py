"""The stack's configuration, read once from `pulumi config` and validated with errors that say what to set.

Keys: `gcp:project`, `gcp:region`, `detector:role` (`platform` or `experiment`); platform options
`detector:tensorboard`, `detector:keepImageVersions`, `detector:imageRetentionDays`, `detector:untaggedImageDays`,
`detector:cloudBuildServiceAccount`; experiment keys `detector:platformStack` (required),
`detector:protectBucket`, `detector:noncurrentVersionDays`, `detector:checkpointRetentionDays`,
`detector:softDeleteDays`, `detector:tensorboard`, `detector:launcher`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi

ROLES = ("platform", "experiment")
MEMBER = re.compile(r"(user|group|serviceAccount|domain):[^\s:]+|(principal|principalSet)://\S+")


class SettingsError(pulumi.RunError):
    """A missing or invalid configuration value; Pulumi prints the message without a traceback."""


@dataclass(frozen=True)
class PlatformSettings:
    project: str
    region: str
    stack: str
    tensorboard: bool = True
    keep_image_versions: int = 10
    image_retention_days: int = 30
    untagged_image_days: int = 7
    cloud_build_service_account: str | None = None


@dataclass(frozen=True)
class ExperimentSettings:
    project: str
    region: str
    stack: str
    platform_stack: str
    protect_bucket: bool = True
    noncurrent_version_days: int = 7
    checkpoint_retention_days: int = 30
    soft_delete_days: int = 0
    tensorboard: bool = True
    launcher: str | None = None


def load() -> PlatformSettings | ExperimentSettings:
    """Read and validate this stack's configuration."""
    gcp = pulumi.Config("gcp")
    config = pulumi.Config("detector")
    stack = pulumi.get_stack()
    project = _require(gcp, "project", "YOUR_PROJECT_ID")
    region = _require(gcp, "region", "us-central1")
    if not re.fullmatch(r"[a-z]+-[a-z]+\d+", region):
        raise SettingsError(f"gcp:region {region!r} is not a region (zones are not allowed; Vertex AI "
                            "needs a regional bucket): pulumi config set gcp:region us-central1")
    role = config.get("role")
    if role not in ROLES:
        raise SettingsError(
            f"detector:role is {role!r}; it must say what this stack is. For the shared platform stack: "
            "`pulumi config set detector:role platform`; for an experiment: `pulumi config set detector:role "
            "experiment` and `pulumi config set detector:platformStack ORGANIZATION/detector/PLATFORM_STACK`."
        )
    if role == "platform":
        return PlatformSettings(
            project=project,
            region=region,
            stack=stack,
            tensorboard=_bool(config, "tensorboard", PlatformSettings.tensorboard),
            keep_image_versions=_positive_int(config, "keepImageVersions", PlatformSettings.keep_image_versions),
            image_retention_days=_positive_int(config, "imageRetentionDays", PlatformSettings.image_retention_days),
            untagged_image_days=_positive_int(config, "untaggedImageDays", PlatformSettings.untagged_image_days),
            cloud_build_service_account=_email(config, "cloudBuildServiceAccount"),
        )
    return ExperimentSettings(
        project=project,
        region=region,
        stack=stack,
        platform_stack=_platform_stack(config),
        protect_bucket=_bool(config, "protectBucket", ExperimentSettings.protect_bucket),
        noncurrent_version_days=_positive_int(
            config, "noncurrentVersionDays", ExperimentSettings.noncurrent_version_days
        ),
        checkpoint_retention_days=_positive_int(
            config, "checkpointRetentionDays", ExperimentSettings.checkpoint_retention_days
        ),
        soft_delete_days=_soft_delete_days(config),
        tensorboard=_bool(config, "tensorboard", ExperimentSettings.tensorboard),
        launcher=_member(config, "launcher"),
    )


def _require(config: pulumi.Config, key: str, example: str) -> str:
    value = config.get(key)
    if not value:
        raise SettingsError(f"{config.name}:{key} is not set: pulumi config set {config.name}:{key} {example}")
    return value


def _bool(config: pulumi.Config, key: str, default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise SettingsError(f"detector:{key} must be true or false, not {value!r}: "
                            f"pulumi config set detector:{key} {str(default).lower()}")
    return value.lower() == "true"


def _positive_int(config: pulumi.Config, key: str, default: int) -> int:
    value = config.get(key)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"detector:{key} must be a whole number of at least 1, not {value!r}: "
                            f"pulumi config set detector:{key} {default}")
    return int(value)


def _soft_delete_days(config: pulumi.Config) -> int:
    """0 (off) or 7-90 days: the range of a bucket's soft delete retention (pulumi_gcp `BucketSoftDeletePolicy`)."""
    value = config.get("softDeleteDays")
    if value is None:
        return ExperimentSettings.soft_delete_days
    if not value.isdigit() or not (int(value) == 0 or 7 <= int(value) <= 90):
        raise SettingsError(f"detector:softDeleteDays must be 0 (off) or 7 to 90 days, not {value!r}: "
                            "pulumi config set detector:softDeleteDays 0")
    return int(value)


def _email(config: pulumi.Config, key: str) -> str | None:
    value = config.get(key)
    if value is not None and not re.fullmatch(r"[^@\s:]+@[^@\s]+\.[a-z]+", value):
        raise SettingsError(f"detector:{key} must be a service account email, not {value!r}: "
                            f"pulumi config set detector:{key} NAME@PROJECT.iam.gserviceaccount.com")
    return value


def _member(config: pulumi.Config, key: str) -> str | None:
    value = config.get(key)
    if value is not None and not MEMBER.fullmatch(value):
        raise SettingsError(f"detector:{key} must be an IAM member such as user:you@example.com or "
                            f"group:team@example.com, not {value!r}: "
                            f"pulumi config set detector:{key} user:you@example.com")
    return value


def _platform_stack(config: pulumi.Config) -> str:
    value = config.get("platformStack")
    if value is None or len(value.split("/")) != 3 or not all(value.split("/")):
        raise SettingsError(
            f"detector:platformStack is {value!r}; an experiment needs the fully qualified name of the "
            "platform stack: pulumi config set detector:platformStack ORGANIZATION/detector/PLATFORM_STACK "
            "(with `pulumi login --local` the organization is `organization`)."
        )
    return value
