"""Is an image tag already in Artifact Registry? One HEAD request to the Docker Registry v2 API."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.errors import DetectorError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


class RegistryError(DetectorError):
    """The registry answered something other than 'there' or 'not there'."""


def google_access_token() -> str:
    """An OAuth token of the application-default credentials (``gcloud auth application-default login``)."""
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    return access_token(credentials)


def access_token(credentials: Credentials) -> str:
    """The token of refreshed credentials."""
    if not credentials.token:
        raise RegistryError("the application-default credentials gave no access token; run "
                            "`gcloud auth application-default login`")
    return str(credentials.token)


class Registry:
    """``base_url`` replaces ``https://HOST`` of the image reference (a local registry in tests)."""

    def __init__(self, token: Callable[[], str] = google_access_token, base_url: str | None = None,
                 timeout_s: float = 20):
        self._token = token
        self._base_url = base_url
        self._timeout_s = timeout_s

    def digest(self, image: str) -> str | None:
        """The manifest digest of ``HOST/PATH:TAG``, or None when the tag does not exist."""
        repository, _, tag = image.rpartition(":")
        host, _, path = repository.partition("/")
        url = f"{self._base_url or 'https://' + host}/v2/{path}/manifests/{tag}"
        request = urllib.request.Request(url, method="HEAD", headers={
            "Authorization": f"Bearer {self._token()}", "Accept": MANIFEST_TYPES})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return response.headers.get("Docker-Content-Digest") or f"tag:{tag}"
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise RegistryError(f"{url}: HTTP {err.code} {err.reason}; check that you can read the repository "
                                "(roles/artifactregistry.reader) and `gcloud auth application-default login`") from err
        except urllib.error.URLError as err:
            raise RegistryError(f"{url}: {err.reason}") from err
