"""Where Discord's OpenAPI description is found, and the pinned download that fills the cache."""

from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import discord_spec_source as source

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone with nothing beside it and no DISCORD_API_SPEC."""
    monkeypatch.delenv(source.ENV_VAR, raising=False)
    root = tmp_path / "imagine"
    root.mkdir()
    return root


def _write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_bare_clone_has_no_spec_and_the_header_says_how_to_turn_validation_on(clone: Path) -> None:
    assert (source.find_spec(clone), source.describe_validation(clone)) == (
        None,
        "fake Discord: request bodies are NOT validated against Discord's spec (Discord's OpenAPI "
        "description not found); to turn it on, run scripts/fetch-discord-spec (needs the network "
        "once) or set DISCORD_API_SPEC=/path/to/openapi.json",
    )


def test_the_spec_beside_the_clone_comes_before_the_cache(clone: Path) -> None:
    _write(source.cached_spec_path(clone))
    shared = _write(clone.parent / "shared" / "discord-api-spec" / "openapi.json")
    assert source.find_spec(clone) == shared


def test_the_cache_is_used_when_nothing_is_beside_the_clone(clone: Path) -> None:
    cached = _write(source.cached_spec_path(clone))
    assert (source.find_spec(clone), str(cached) in source.describe_validation(clone)) == (cached, True)


def test_discord_api_spec_comes_first(clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(clone.parent / "shared" / "discord-api-spec" / "openapi.json")
    chosen = _write(tmp_path / "elsewhere" / "openapi.json")
    monkeypatch.setenv(source.ENV_VAR, str(chosen))
    assert source.find_spec(clone) == chosen


def test_a_wrong_discord_api_spec_is_reported_not_replaced_by_another_copy(
    clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(clone.parent / "shared" / "discord-api-spec" / "openapi.json")
    monkeypatch.setenv(source.ENV_VAR, str(tmp_path / "typo.json"))
    header = source.describe_validation(clone)
    said = f"DISCORD_API_SPEC={tmp_path / 'typo.json'} does not exist" in header
    assert (source.find_spec(clone), said) == (None, True)


def test_the_copy_beside_the_clone_is_the_pinned_upstream_file() -> None:
    shared = source.shared_spec_path()
    if not shared.is_file():
        pytest.skip(f"{shared} is not beside this clone")
    assert hashlib.sha256(shared.read_bytes()).hexdigest() == source.PINNED_SHA256


def test_the_pinned_url_names_the_upstream_repository_at_the_pinned_commit() -> None:
    assert source.PINNED_URL == (
        "https://raw.githubusercontent.com/discord/discord-api-spec/"
        "74fda0fad044407ea280043a03ffc9bc64c4e49e/specs/openapi.json"
    )


# --------------------------------------------------------------------------- the download


class _Serve(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror() -> Iterator[type[_Serve]]:
    """A loopback HTTP server standing in for the upstream host; set `.body` to what it serves."""
    handler = type("Handler", (_Serve,), {"body": b""})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/specs/openapi.json"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/specs/openapi.json"


def test_a_download_with_the_pinned_checksum_fills_the_cache(clone: Path, mirror: type[_Serve]) -> None:
    mirror.body = b'{"openapi": "3.1.0"}'
    digest = hashlib.sha256(mirror.body).hexdigest()
    path = source.fetch_pinned_spec(mirror.url, repo_root=clone, sha256=digest)  # type: ignore[attr-defined]
    assert (path, path.read_bytes(), source.find_spec(clone)) == (
        source.cached_spec_path(clone),
        mirror.body,
        path,
    )


def test_a_download_with_another_checksum_is_refused_and_not_kept(clone: Path, mirror: type[_Serve]) -> None:
    mirror.body = b'{"openapi": "tampered"}'
    with pytest.raises(source.SpecFetchError, match=r"SHA-256 is .* not the pinned .*: not kept"):
        source.fetch_pinned_spec(mirror.url, repo_root=clone)  # type: ignore[attr-defined]
    assert (source.find_spec(clone), list(clone.rglob("*"))) == (None, [])


def test_fetching_offline_says_so_in_one_line_and_exits_1(clone: Path) -> None:
    url = _closed_port_url()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch-discord-spec"), "--from", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr.count("\n"), "Traceback" in result.stderr) == (
        1,
        "",
        1,
        False,
    )
    assert result.stderr.startswith(f"error: could not download {url} (is this machine online?)")
