"""Config loading: defaults, inheritance, and errors that name file, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from activator.config import ConfigError, load_config
from activator.config_values import parse_duration, parse_size
from activator.core.ratelimit import RateLimit
from activator.model import Kind, MiB, Network, Strategy

SITE = '[[sites]]\nname = "blog"\nhosts = ["Blog.Example.com"]\nimage = "blog:latest"\nport = 8080\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dialup.toml"
    path.write_text(text)
    return path


def test_defaults_and_kind_memory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SITE + 'kind = "next"\n'))
    assert str(config.server.listen) == "127.0.0.1:9000"
    assert config.server.db_path == Path("/var/lib/dialup/system/dialup.db")
    assert config.caddy.admin == "unix//run/dialup/caddy-admin.sock" and config.caddy.manage
    (site,) = config.sites
    assert site.hosts == ("blog.example.com",)
    assert (site.kind, site.strategy, site.start_timeout, site.health_path) == (Kind.NEXT, Strategy.LAZY, 30.0, "/")
    assert site.memory_limit == 512 * MiB
    assert site.max_waiting == 1000


def test_defaults_table_is_inherited_and_overridden(tmp_path: Path) -> None:
    text = (
        '[defaults]\nstart_timeout = "5s"\nkind = "node"\n'
        + SITE
        + SITE.replace("blog", "app")
        .replace("Blog", "App")
        .replace("port = 8080", 'port = 3000\nstart_timeout = "500ms"\nmemory = "100MiB"')
    )
    blog, app = load_config(write(tmp_path, text)).sites
    assert (blog.start_timeout, blog.kind, blog.memory_limit) == (5.0, Kind.NODE, 256 * MiB)
    assert (app.start_timeout, app.kind, app.memory_limit) == (0.5, Kind.NODE, 100 * MiB)


def test_network_defaults_to_holder_and_is_inherited(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SITE))
    assert config.sites[0].network is Network.HOLDER and config.uses_holders
    assert (config.holder.image, config.holder.busybox) == ("dialup-holder:1", Path("/bin/busybox"))
    text = '[defaults]\nnetwork = "plain"\n[holder]\nimage = "h:2"\nbusybox = "/opt/busybox"\n' + SITE
    config = load_config(write(tmp_path, text))
    assert config.sites[0].network is Network.PLAIN and not config.uses_holders
    assert (config.holder.image, config.holder.busybox) == ("h:2", Path("/opt/busybox"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5s", 1.5), (3, 3.0), ("1h", 3600.0)],
)
def test_durations(text: object, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("64MiB", 64 * MiB), ("64m", 64 * MiB), ("2.1GiB", int(2.1 * 1024 * MiB)), (512, 512)]
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        (SITE + "port = 0\n", "sites[0].port", "0"),  # duplicate key is a TOML syntax error
        (SITE.replace("port = 8080", "port = 0"), "sites[0].port", "0"),
        (SITE.replace("port = 8080", "port = true"), "sites[0].port", "True"),
        (SITE + 'memory = "lots"\n', "sites[0].memory", "'lots'"),
        (SITE + "max_waiting = 0\n", "sites[0].max_waiting", "0"),
        (SITE + 'health_path = "health"\n', "sites[0].health_path", "'health'"),
        ('[caddy]\nadmin = "somewhere"\n' + SITE, "caddy.admin", "'somewhere'"),
        ('[caddy]\nmanage = "yes"\n' + SITE, "caddy.manage", "'yes'"),
        ('[defaults]\nimage = "x"\n' + SITE, "defaults.image", "'x'"),
        ('[server]\nstate_dir = ""\n' + SITE, "server.state_dir", "''"),
        ("[server]\nstate_dir = 3\n" + SITE, "server.state_dir", "3"),
        ("sites = 3\n", "sites", "3"),
        (SITE + 'network = "bridge"\n', "sites[0].network", "'bridge'"),
        ('[holder]\nbusybox = "busybox"\n' + SITE, "holder.busybox", "'busybox'"),
        ("[holder]\nsize = 1\n" + SITE, "holder.size", "1"),
    ],
)
def test_errors_name_file_key_and_value(tmp_path: Path, text: str, key: str, value: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    if "port = 0\n" in text and text.count("port") == 2:
        assert "(syntax)" in message  # TOML itself refuses a repeated key
    else:
        assert err.value.key == key and value in message, message


def test_a_relative_state_dir_is_the_config_files_directorys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    write(tmp_path / "etc", '[server]\nstate_dir = "../state/"\n' + SITE)
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/dialup.toml")  # wherever the command runs from
    assert config.server.state_dir == tmp_path / "state"
    assert config.server.admin_socket == tmp_path / "state" / "system" / "dialup.sock"
    write(tmp_path, '[server]\nstate_dir = "/srv/dialup"\n' + SITE)
    assert load_config(tmp_path / "dialup.toml").server.state_dir == Path("/srv/dialup")


def test_the_demo_keeps_its_state_in_the_repository_not_in_tmp() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "examples" / "demo.toml")
    assert config.server.state_dir == root / "examples" / ".dialup-demo"
    assert not config.caddy.admin.startswith("unix//tmp/")
    assert "examples/.dialup-demo/" in (root / ".gitignore").read_text().splitlines()
    # Its docs site (from source) is editable in the browser, its preview beside it.
    assert (config.editor.host, config.editor.preview_of("docs")) == ("editor.localhost", "docs-dev.localhost")


@pytest.mark.parametrize(
    "admin", ["unix//run/dialup/caddy.sock", "127.0.0.1:2019", "127.0.0.53:2019", "localhost:2019", "[::1]:2019"]
)
def test_caddy_admin_is_a_unix_socket_or_a_loopback_address(tmp_path: Path, admin: str) -> None:
    assert load_config(write(tmp_path, f'[caddy]\nadmin = "{admin}"\n' + SITE)).caddy.admin == admin


@pytest.mark.parametrize(
    "admin", [":2019", "0.0.0.0:2019", "192.168.1.10:2019", "example.com:2019", "[::]:2019", "::1:2019", "unix/x.sock"]
)
def test_caddy_admin_reachable_from_elsewhere_is_refused(tmp_path: Path, admin: str) -> None:
    path = write(tmp_path, f'[caddy]\nadmin = "{admin}"\n' + SITE)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.path, err.value.key, err.value.value) == (str(path), "caddy.admin", admin)
    assert str(err.value).startswith(f"{path}: caddy.admin = {admin!r}: expected 'unix//path/to.sock' or a loopback")


def test_cap_add_takes_the_safe_set_without_asking(tmp_path: Path) -> None:
    text = SITE + 'cap_add = ["NET_BIND_SERVICE", "CAP_CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL"]\n'
    (site,) = load_config(write(tmp_path, text)).sites
    assert site.cap_add == ("NET_BIND_SERVICE", "CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL")


@pytest.mark.parametrize("cap", ["NET_RAW", "NET_ADMIN", "SYS_ADMIN", "CAP_SYS_PTRACE", "ALL", "MKNOD"])
def test_cap_add_outside_the_safe_set_is_refused_naming_key_and_value(tmp_path: Path, cap: str) -> None:
    path = write(tmp_path, SITE + f'cap_add = ["NET_BIND_SERVICE", "{cap}"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.path, err.value.key) == (str(path), "sites[0].cap_add")
    message = str(err.value)
    assert message.startswith(f"{path}: sites[0].cap_add = ") and cap.removeprefix("CAP_") in message, message
    assert "allow_any_capability = true" in message


def test_allow_any_capability_lets_a_site_add_any(tmp_path: Path) -> None:
    text = SITE + 'cap_add = ["NET_ADMIN", "SYS_PTRACE"]\nallow_any_capability = true\n'
    assert load_config(write(tmp_path, text)).sites[0].cap_add == ("NET_ADMIN", "SYS_PTRACE")
    path = write(tmp_path, SITE + 'allow_any_capability = "yes"\n')
    with pytest.raises(ConfigError, match=r"sites\[0\]\.allow_any_capability = 'yes'"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_a_backups_repository_is_a_local_folder(tmp_path: Path) -> None:
    text = '[backups]\nrepository = "sftp:me@host:/srv/backups"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == "backups.repository" and "sftp" in caught.value.problem
    config = load_config(
        write(tmp_path, '[backups]\nrepository = "backups"\ndatabase = { every = "1h", keep = "2d" }\n')
    )
    assert config.backups.repository == tmp_path / "backups"
    assert (config.backups.database.every, config.backups.database.keep) == (3600.0, 2 * 86400.0)
    assert config.backups.sites.every == 86400.0  # the class's default


def test_a_scalable_site_gets_its_second_instance_and_its_settings(tmp_path: Path) -> None:
    text = SITE + (
        'strategy = "scalable"\nscale_threshold = 20\nscale_down_delay = "2m"\nscale_window = "30s"\n'
        'rate_limit = { rate = "600/m", burst = 20 }\n'
    )
    site, second = load_config(write(tmp_path, text)).sites
    assert (site.strategy, site.scale_threshold, site.scale_down_delay, site.scale_window) == (
        Strategy.SCALABLE, 20.0, 120.0, 30.0
    )  # fmt: skip
    assert site.rate_limit == RateLimit(10.0, 20)
    assert second.name == "blog.2" and second.replica_of == "blog" and second.hosts == site.hosts
    assert second.strategy is Strategy.LAZY and second.rate_limit is None and second.image == site.image


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("scale_threshold = 20\n", "sites[0].scale_threshold", 'only for a site with strategy = "scalable"'),
        ('strategy = "scalable"\nscale_window = "2s"\n', "sites[0].scale_window", "between 6s and 300s"),
        ('strategy = "scalable"\nscale_threshold = 0\n', "sites[0].scale_threshold", "greater than zero"),
        ('rate_limit = "ten a second"\n', "sites[0].rate_limit", "expected a rate like '10/s'"),
        ('rate_limit = { rate = "5/s", burst = 0 }\n', "sites[0].rate_limit", "burst"),
    ],
)
def test_bad_scaling_and_rate_limit_settings_are_named(tmp_path: Path, extra: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, SITE + extra))
    assert key in str(err.value) and problem in str(err.value)


def test_a_static_site_caddy_serves_from_its_files_cannot_be_limited_or_scaled(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    text = (
        f'[builds]\nsource_roots = ["{tmp_path}"]\n[[sites]]\nname = "docs"\nhosts = ["docs.test"]\n'
        'source = "www"\nrate_limit = "5/s"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "sites[0].rate_limit" in str(err.value) and "Caddy serves this static site's files" in str(err.value)


def test_cost_and_history_tables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[cost]\nmonthly = 25\ncurrency = "EUR"\n[history]\nhours = "30d"\n' + SITE))
    assert (config.cost.monthly, config.cost.currency) == (25.0, "EUR")
    assert (config.history.minutes, config.history.hours) == (86400.0, 30 * 86400.0)
    for text, key in (
        ("[cost]\nmonthly = -1\n", "cost.monthly"),
        ('[history]\nminutes = "10m"\n', "history.minutes"),
        ('[history]\nminutes = "2d"\nhours = "1d"\n', "history.hours"),
    ):
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, text + SITE))
        assert key in str(err.value)
