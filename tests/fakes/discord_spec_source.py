"""Where the tests find Discord's OpenAPI description, and how a fresh clone gets a copy.

The description is Discord's own data (MIT licensed, about 1 MB) and is never committed here.
It is looked for, in this order:

1. ``DISCORD_API_SPEC`` — a path to ``openapi.json``. When set it is the only place looked at,
   so a wrong path is reported instead of silently falling back to another copy;
2. ``../shared/discord-api-spec/openapi.json`` beside the clone;
3. the cache ``scripts/fetch-discord-spec`` fills: ``.cache/discord-api-spec/<commit>/openapi.json``
   in the clone, downloaded from the upstream repository at :data:`PINNED_COMMIT` and kept only
   when its SHA-256 is :data:`PINNED_SHA256`.

Found, the fake Discord validates every request body against it; not found, only the
hand-written checks run and the test run's header says how to turn validation on.
Only the standard library is used, so the fetch script runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ENV_VAR = "DISCORD_API_SPEC"
UPSTREAM_REPOSITORY = "discord/discord-api-spec"
# The upstream commit whose specs/openapi.json the suite was checked against ("Automated spec
# update (242668)", 2026-07-18); byte-identical to the copy in ../shared/discord-api-spec.
PINNED_COMMIT = "74fda0fad044407ea280043a03ffc9bc64c4e49e"
PINNED_SHA256 = "8c1d0707ccdf8e380a86dfba04058820a66435c1b69d5ed82e04dd8c0520dd73"
PINNED_URL = f"https://raw.githubusercontent.com/{UPSTREAM_REPOSITORY}/{PINNED_COMMIT}/specs/openapi.json"
# Far above the real file (1.2 MB): a wrong answer cannot fill the disk.
MAX_SPEC_BYTES = 32 * 1024 * 1024
DOWNLOAD_TIMEOUT = 60.0

REPO_ROOT = Path(__file__).resolve().parents[2]
HOW_TO_ENABLE = (
    f"run scripts/fetch-discord-spec (needs the network once) or set {ENV_VAR}=/path/to/openapi.json"
)


class SpecFetchError(Exception):
    """The pinned description could not be fetched or was not the pinned one; one line says why."""


def shared_spec_path(repo_root: Path = REPO_ROOT) -> Path:
    """``../shared/discord-api-spec/openapi.json`` beside the clone."""
    return repo_root.parent / "shared" / "discord-api-spec" / "openapi.json"


def cached_spec_path(repo_root: Path = REPO_ROOT) -> Path:
    """Where ``scripts/fetch-discord-spec`` keeps the pinned description (one folder per commit)."""
    return repo_root / ".cache" / "discord-api-spec" / PINNED_COMMIT / "openapi.json"


def explicit_spec_path() -> Path | None:
    """The path ``DISCORD_API_SPEC`` names, or None when it is unset or blank."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


def find_spec(repo_root: Path = REPO_ROOT) -> Path | None:
    """The description to validate against, by the lookup order above; None when there is none."""
    explicit = explicit_spec_path()
    if explicit is not None:
        return explicit if explicit.is_file() else None
    for candidate in (shared_spec_path(repo_root), cached_spec_path(repo_root)):
        if candidate.is_file():
            return candidate
    return None


def describe_validation(repo_root: Path = REPO_ROOT) -> str:
    """One line for the test run's header: whether requests are validated, and how to turn it on."""
    found = find_spec(repo_root)
    if found is not None:
        return f"fake Discord: request bodies are validated against Discord's OpenAPI description ({found})"
    explicit = explicit_spec_path()
    where = f"{ENV_VAR}={explicit} does not exist" if explicit else "Discord's OpenAPI description not found"
    return (
        f"fake Discord: request bodies are NOT validated against Discord's spec ({where}); "
        f"to turn it on, {HOW_TO_ENABLE}"
    )


def fetch_pinned_spec(
    url: str = PINNED_URL,
    *,
    repo_root: Path = REPO_ROOT,
    sha256: str = PINNED_SHA256,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> Path:
    """Download the pinned description into the cache, keeping it only if its SHA-256 matches.

    Returns the cached path (at once when it is already there and intact). Raises
    :class:`SpecFetchError` with one line when offline, refused, too large or not the pinned file;
    nothing is left in the cache then.
    """
    target = cached_spec_path(repo_root)
    if target.is_file() and _sha256(target.read_bytes()) == sha256:
        return target
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(MAX_SPEC_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SpecFetchError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SpecFetchError(f"could not download {url} (is this machine online?): {reason}") from None
    if len(body) > MAX_SPEC_BYTES:
        raise SpecFetchError(f"{url} sent more than {MAX_SPEC_BYTES // (1024 * 1024)} MB: not the spec")
    digest = _sha256(body)
    if digest != sha256:
        raise SpecFetchError(
            f"{url} sent a file whose SHA-256 is {digest}, not the pinned {sha256}: not kept"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so a cut-off download never looks like a spec.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as part:
        part.write(body)
    Path(part.name).replace(target)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
