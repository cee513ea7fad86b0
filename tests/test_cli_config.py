"""Where the command line finds credentials, and how it fails: one line, one exit code."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner, Result

from memcachier_async import (
    AuthenticationError,
    DecodeError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    TransportError,
)
from memcachier_async._cli import main
from memcachier_async._cli.common import (
    CacheTarget,
    ConfigError,
    Selection,
    exit_code_for,
    load_config,
)
from memcachier_async.testing import Emulator

pytestmark = pytest.mark.usefixtures("clean_cli_environment")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_one_line_error(result: Result, code: int) -> str:
    """The failure is exit ``code`` with a single ``Error: ...`` line and no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def served() -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator(history_interval=3600)
    emulator.drive_traffic(300)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(emulator.serve()) as base_url,
    ):
        yield emulator, base_url
    emulator.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the TOML file -----------------------------------------------------------------


def test_config_lists_caches_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[[cache]] tables give name, username, password (or password_env), optional id and URL."""
    monkeypatch.setenv("WEB_PASSWORD", "from-env")
    config = write_config(
        tmp_path / "caches.toml",
        'base_url = "http://127.0.0.1:9/api/v1"\n'
        '[[cache]]\nname = "web"\nusername = "A1"\npassword_env = "WEB_PASSWORD"\n'
        "cache_id = 1561\n"
        '[[cache]]\nname = "jobs"\nusername = "B2"\npassword = "pw2"\n'
        'base_url = "https://example.test/api/v1"\n',
    )
    web, jobs = load_config(config)
    assert web == CacheTarget("web", "A1", "from-env", 1561, "http://127.0.0.1:9/api/v1")
    assert jobs == CacheTarget("jobs", "B2", "pw2", None, "https://example.test/api/v1")
    assert "from-env" not in repr(web)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no caches"),
        ("[[cache]]\nname = 'a'\npassword = 'p'\n", "missing 'username'"),
        ("[[cache]]\nusername = 'u'\npassword = 'p'\n", "missing 'name'"),
        ("[[cache]]\nname = 'a'\nusername = 'u'\n", "exactly one of 'password'"),
        (
            "[[cache]]\nname = 'a'\nusername = 'u'\npassword = 'p'\npassword_env = 'X'\n",
            "exactly one of 'password'",
        ),
        ("[[cache]]\nname = 'a'\nusername = 'u'\npassword_env = 'NOT_SET_ANYWHERE'\n", "not set"),
        ("[[cache]]\nname = 'a'\nusername = 'u'\npassword = 'p'\nuser = 'x'\n", "unknown key"),
        ("[[cache]]\nname = 'a'\nusername = 'u'\npassword = 'p'\ncache_id = -1\n", "cache_id"),
        ("[[cache]]\nname = 'a'\nusername = 5\npassword = 'p'\n", "non-empty string"),
        (
            "[[cache]]\nname = 'a'\nusername = 'u'\npassword = 'p'\n"
            "[[cache]]\nname = 'a'\nusername = 'v'\npassword = 'q'\n",
            "two caches are named 'a'",
        ),
        ("caches = 1\n", "unknown key"),
        ("[[cache]\n", "invalid TOML"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    """A bad file is refused with a message that says where and what."""
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "caches.toml", text))


def test_config_error_never_shows_a_password(tmp_path: Path) -> None:
    """Errors about a cache entry name it by position, never by its password."""
    config = write_config(
        tmp_path / "caches.toml",
        "[[cache]]\nname = 'a'\nusername = 'u'\npassword = 's3cret-pw'\nextra = 1\n",
    )
    result = run("stats", "--config", str(config))
    line = assert_one_line_error(result, 2)
    assert "cache #1" in line
    assert "s3cret-pw" not in result.output


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    """A config path that does not exist: exit 2, the path in the message."""
    line = assert_one_line_error(run("stats", "--config", str(tmp_path / "nope.toml")), 2)
    assert "nope.toml" in line


# --- choosing the cache ------------------------------------------------------------


def test_no_credentials_says_where_to_put_them() -> None:
    """Without flags, environment or file: exit 2 and the three ways to give credentials."""
    line = assert_one_line_error(run("stats"), 2)
    for hint in ("--username", "MEMCACHIER_USERNAME", "--config", "--emulator"):
        assert hint in line


def test_environment_credentials(served: tuple[Emulator, str]) -> None:
    """MEMCACHIER_USERNAME, MEMCACHIER_PASSWORD and MEMCACHIER_BASE_URL are enough."""
    emulator, base_url = served
    env = {
        "MEMCACHIER_USERNAME": emulator.username,
        "MEMCACHIER_PASSWORD": emulator.password,
        "MEMCACHIER_BASE_URL": base_url,
    }
    result = run("stats", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["servers"]) == 3


def test_flags_win_over_the_environment(served: tuple[Emulator, str]) -> None:
    """An explicit --password replaces a wrong one from the environment."""
    emulator, base_url = served
    env = {"MEMCACHIER_USERNAME": emulator.username, "MEMCACHIER_PASSWORD": "wrong"}
    result = run("stats", "--base-url", base_url, "-p", emulator.password, "--json", env=env)
    assert result.exit_code == 0, result.output


def test_config_file_picks_a_cache(served: tuple[Emulator, str], tmp_path: Path) -> None:
    """--config with --cache NAME works on that cache; a one-cache command needs the choice."""
    emulator, base_url = served
    other = emulator.add_cache(2).add_credential()
    config = write_config(
        tmp_path / "caches.toml",
        f'base_url = "{base_url}"\n'
        f'[[cache]]\nname = "web"\nusername = "{emulator.username}"\n'
        f'password = "{emulator.password}"\n'
        f'[[cache]]\nname = "jobs"\nusername = "{other.sasl_username}"\n'
        f'password = "{other.sasl_password}"\n',
    )
    result = run("stats", "--config", str(config), "--cache", "jobs", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cache"] == "jobs"
    assert len(data["servers"]) == 2

    line = assert_one_line_error(run("stats", "--config", str(config)), 2)
    assert "--cache NAME (web, jobs)" in line
    line = assert_one_line_error(run("stats", "--config", str(config), "--cache", "db"), 2)
    assert "no cache named 'db'" in line

    env = {"MEMCACHIER_CONFIG": str(config)}
    result = run("watch", "--rounds", "1", "--interval", "0.01", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert [c["cache"] for c in json.loads(result.stdout)["caches"]] == ["web", "jobs"]


def test_username_flag_and_config_exclude_each_other(tmp_path: Path) -> None:
    """Giving both a --username and a --config is ambiguous: exit 2."""
    config = write_config(
        tmp_path / "caches.toml", "[[cache]]\nname = 'a'\nusername = 'u'\npassword = 'p'\n"
    )
    line = assert_one_line_error(run("stats", "--config", str(config), "-u", "x"), 2)
    assert "exclude each other" in line


def test_plain_http_to_another_host_is_refused() -> None:
    """The SDK's refusal of http:// off loopback becomes a usage error, not a traceback."""
    result = run("stats", "-u", "u", "-p", "p", "--base-url", "http://example.com/api/v1")
    line = assert_one_line_error(result, 2)
    assert "refusing plain http://" in line


_ONE_CACHE = "[[cache]]\nname = 'a'\nusername = 'u'\npassword = 's3cret-pw'\n"


def run_export(path: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``export`` in its own process, bounded: a refusal that failed to happen would serve on."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [
            *(sys.executable, "-m", "memcachier_async._cli", "export"),
            *("--listen", "127.0.0.1:0", "--config", str(path), *flags),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("config", "flags"),
    [
        ("base_url = 'https://h.example:65536/api/v1'\n" + _ONE_CACHE, []),
        (_ONE_CACHE + "base_url = 'https://h.example:0/api/v1'\n", []),
        (_ONE_CACHE, ["--base-url", "https://h.example:99999/api/v1"]),
    ],
    ids=["file-default", "file-cache", "flag"],
)
def test_a_port_out_of_range_is_a_usage_error(
    tmp_path: Path, config: str, flags: list[str]
) -> None:
    """A base_url port outside 1-65535, in the file (for every cache or for one) or in
    --base-url: exit 2 with one Error: line naming base_url's port, before any call."""
    path = write_config(tmp_path / "caches.toml", config)
    for command in ("stats", "history"):
        result = run(command, "--config", str(path), *flags)
        line = assert_one_line_error(result, 2)
        assert "base_url's port must be from 1 to 65535" in line
        assert "s3cret-pw" not in result.output
    code, output = run_export(path, *flags)
    assert code == 2
    assert "base_url's port must be from 1 to 65535" in output


_PROXY = "socks5://pu:proxy-pw-77@127.0.0.1:1080"


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_proxy_environment")
@pytest.mark.parametrize(
    ("proxy", "message"),
    [("ftp://pu:proxy-pw-77@127.0.0.1:21", "ftp:// proxy is not supported"), (_PROXY, "socksio")],
)
def test_an_unusable_proxy_in_the_environment_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: str, message: str
) -> None:
    """ALL_PROXY with a scheme the default engine cannot use (ftp://, or SOCKS without
    socksio): exit 2 with one Error: line saying so, never the proxy's password."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "socksio" else real(name, *a)
    )
    monkeypatch.setenv("ALL_PROXY", proxy)
    path = write_config(
        tmp_path / "caches.toml", _ONE_CACHE + "base_url = 'https://h.example/api/v1'\n"
    )
    result = run("stats", "--config", str(path))
    line = assert_one_line_error(result, 2)
    assert message in line
    assert "HTTPS_PROXY/ALL_PROXY" in line
    assert "proxy-pw-77" not in result.output


@pytest.mark.usefixtures("no_proxy_environment")
def test_export_refuses_a_socks_proxy_on_aiohttp(tmp_path: Path) -> None:
    """export --http-backend aiohttp with ALL_PROXY=socks5://...: aiohttp cannot use it,
    so exit 2 with one Error: line before serving, never the proxy's password."""
    pytest.importorskip("aiohttp")
    path = write_config(
        tmp_path / "caches.toml", _ONE_CACHE + "base_url = 'https://h.example/api/v1'\n"
    )
    code, output = run_export(path, "--http-backend", "aiohttp", env={"ALL_PROXY": _PROXY})
    assert code == 2
    assert "socks5:// proxy is not supported by http_backend='aiohttp'" in output
    assert "proxy-pw-77" not in output


def test_emulator_cache_names() -> None:
    """--emulator --cache picks one of the emulated caches; an unknown one is a usage error."""
    result = run("stats", "--emulator", "--cache", "sessions", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cache"] == "sessions"
    line = assert_one_line_error(run("stats", "--emulator", "--cache", "db"), 2)
    assert "web, sessions" in line


# --- exit codes ------------------------------------------------------------------------


def test_wrong_password_exits_3_without_the_password(served: tuple[Emulator, str]) -> None:
    """401: exit 3, one line with the status, and the password nowhere in the output."""
    emulator, base_url = served
    result = run("stats", "--base-url", base_url, "-u", emulator.username, "-p", "not-the-password")
    line = assert_one_line_error(result, 3)
    assert "401" in line
    assert "not-the-password" not in result.output


def test_missing_api_capability_exits_3(served: tuple[Emulator, str]) -> None:
    """403 (no API capability): exit 3."""
    emulator, base_url = served
    limited = emulator.cache.add_credential(api=False)
    result = run(
        "stats", "--base-url", base_url, "-u", limited.sasl_username, "-p", limited.sasl_password
    )
    assert "403" in assert_one_line_error(result, 3)


def test_no_cache_found_exits_4(served: tuple[Emulator, str]) -> None:
    """A 404 "No cache found." is an API failure: exit 4."""
    emulator, base_url = served
    emulator.cache.active = False
    result = run(
        "history", "--base-url", base_url, "-u", emulator.username, "-p", emulator.password
    )
    assert "No cache found." in assert_one_line_error(result, 4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_nothing_listening_exits_5() -> None:
    """A connection refused (nothing listening): exit 5, a transport error."""
    base_url = f"http://127.0.0.1:{free_port()}/api/v1"
    result = run("stats", "--base-url", base_url, "-u", "u", "-p", "p", "--retries", "0")
    assert "ConnectError" in assert_one_line_error(result, 5)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError("x", status_code=401, method="GET", url="u", body=""), 3),
        (PermissionDeniedError("x", status_code=403, method="GET", url="u", body=""), 3),
        (NotFoundError("x", status_code=404, method="GET", url="u", body=""), 4),
        (ServerError("x", status_code=500, method="GET", url="u", body=""), 4),
        (DecodeError("x", endpoint="stats"), 4),
        (TransportError("x"), 5),
    ],
)
def test_exit_code_of_each_error(error: Exception, code: int) -> None:
    """3 for refused credentials, 5 for no answer, 4 for the other API failures."""
    assert exit_code_for(error) == code


def test_selection_repr_hides_the_password() -> None:
    """The parsed options never show the password."""
    assert "hunter2" not in repr(Selection(username="u", password="hunter2"))
