"""The compiled call path (mypyc) and its fall-back to the sources (gateway.compiled)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from gateway import compiled
from gateway.compiled import (
    GROUP_LIBRARY,
    MANIFEST,
    PURE_PYTHON_VARIABLE,
    compiled_module_names,
    inspect_build,
    manifest_text,
    source_path,
)

REPO = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_build(root: Path) -> Path:
    """A package tree as a build leaves it: sources, a (stand-in) extension per module,
    the group library and the manifest."""
    package_dir = root / "gateway"
    for package in compiled.COMPILED_PACKAGES:
        directory = root.joinpath(*package.split("."))
        directory.mkdir(parents=True)
        (directory / "__init__.py").write_text("")
        for name in ("alpha", "beta"):
            (directory / f"{name}.py").write_text(f"VALUE = {name!r}\n")
            (directory / f"{name}{SUFFIX}").write_bytes(b"")
    (package_dir / f"{GROUP_LIBRARY}{SUFFIX}").write_bytes(b"")
    for other in ("gateway/consent", "dsp"):
        root.joinpath(other).mkdir(parents=True, exist_ok=True)
        root.joinpath(other, "rules.py").write_text("LIMIT = 3\n")
    (package_dir / MANIFEST).write_text(manifest_text(package_dir))
    return package_dir


def test_the_modules_are_every_module_of_the_packages_but_their_init(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    assert compiled_module_names(package_dir) == sorted(
        f"{package}.{name}" for package in compiled.COMPILED_PACKAGES for name in ("alpha", "beta")
    )


def test_a_module_left_as_python_is_not_one_of_them(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    for module in compiled.NOT_COMPILED:
        source_path(module, package_dir).write_text("LIBRARY = 'libbpf.so.1'\n")
    names = compiled_module_names(package_dir)
    assert compiled.NOT_COMPILED and not compiled.NOT_COMPILED & set(names)
    assert "gateway.media.alpha" in names


def test_a_build_that_matches_its_sources_runs_compiled(tmp_path: Path) -> None:
    state = inspect_build(fake_build(tmp_path), environ={})
    assert state.compiled, state.reason
    assert state.describe() == "compiled (mypyc)"


def test_a_source_changed_since_the_build_runs_everything_as_python(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    (tmp_path / "gateway" / "sip" / "beta.py").write_text("VALUE = 'edited'\n")
    state = inspect_build(package_dir, environ={})
    assert not state.compiled
    assert "gateway/sip/beta.py changed since the build" in state.reason


def test_a_change_to_a_module_it_reads_types_from_runs_everything_as_python(
    tmp_path: Path,
) -> None:
    """The compiled code checks the types it took from uncompiled modules at run time."""
    package_dir = fake_build(tmp_path)
    (tmp_path / "dsp" / "rules.py").write_text("LIMIT = (3,)\n")
    assert "dsp/rules.py changed" in inspect_build(package_dir, environ={}).reason
    (tmp_path / "dsp" / "rules.py").write_text("LIMIT = 3\n")
    assert inspect_build(package_dir, environ={}).compiled
    (tmp_path / "gateway" / "consent" / "rules.py").unlink()
    assert "gateway/consent/rules.py changed" in inspect_build(package_dir, environ={}).reason


def test_an_editors_lock_file_is_not_a_module(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    (tmp_path / "gateway" / "sip" / ".#alpha.py").write_text("")
    assert inspect_build(package_dir, environ={}).compiled
    assert "gateway.sip..#alpha" not in compiled_module_names(package_dir)


def test_a_module_added_after_the_build_runs_everything_as_python(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    (tmp_path / "gateway" / "calls" / "gamma.py").write_text("VALUE = 'new'\n")
    state = inspect_build(package_dir, environ={})
    assert not state.compiled and "gateway.calls.gamma" in state.reason


def test_a_missing_extension_or_manifest_runs_as_python(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    (tmp_path / "gateway" / "net" / f"alpha{SUFFIX}").unlink()
    assert "has no compiled module" in inspect_build(package_dir, environ={}).reason
    (package_dir / MANIFEST).unlink()
    assert inspect_build(package_dir, environ={}).reason == "the last build did not compile it"


def test_the_environment_asks_for_python(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    assert not inspect_build(package_dir, environ={PURE_PYTHON_VARIABLE: "1"}).compiled
    assert inspect_build(package_dir, environ={PURE_PYTHON_VARIABLE: "0"}).compiled


def test_no_group_library_is_a_python_install(tmp_path: Path) -> None:
    package_dir = fake_build(tmp_path)
    (package_dir / f"{GROUP_LIBRARY}{SUFFIX}").unlink()
    assert inspect_build(package_dir, environ={}).reason == "not compiled at install"


def _imported_from(environ: dict[str, str]) -> list[str]:
    program = (
        "import gateway.compiled as c, gateway.sip.message as m, gateway.calls.b2bua as b,"
        " gateway.media.relay as r, gateway.media.bpf as f;"
        "print(c.STATE.compiled, m.__file__, b.__file__, r.__file__, f.__file__, sep='\\n')"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def _require_compiled() -> None:
    """In CI the build must have compiled the call path; elsewhere say how to build it."""
    state = compiled.STATE
    if not state.compiled:
        if os.environ.get("CI"):
            pytest.fail(f"the call path is not compiled in CI: {state.reason}")
        pytest.skip(f"call path runs as Python here ({state.reason}); build it: make")


def test_the_installed_tree_imports_the_compiled_modules_or_says_why_not() -> None:
    """In CI the build must have compiled the call path, and it must be what runs."""
    _require_compiled()
    environ = {k: v for k, v in os.environ.items() if k != PURE_PYTHON_VARIABLE}
    flag, message_file, b2bua_file, relay_file, bpf_file = _imported_from(environ)
    assert flag == "True"
    assert message_file.endswith(SUFFIX) and b2bua_file.endswith(SUFFIX)
    assert relay_file.endswith(SUFFIX)
    assert bpf_file.endswith("gateway/media/bpf.py")  # left as Python (NOT_COMPILED)


def test_the_variable_imports_every_module_from_its_source() -> None:
    imported = _imported_from({**os.environ, PURE_PYTHON_VARIABLE: "1"})
    flag, message_file, b2bua_file, relay_file, bpf_file = imported
    assert flag == "False"
    assert message_file.endswith("gateway/sip/message.py")
    assert b2bua_file.endswith("gateway/calls/b2bua.py")
    assert relay_file.endswith("gateway/media/relay.py")
    assert bpf_file.endswith("gateway/media/bpf.py")


def test_the_written_out_initialisers_run_compiled() -> None:
    """The dataclasses that write their ``__init__`` out (tests/unit/sip/
    test_written_initialisers.py) get a compiled one: ``@dataclass`` kept it."""
    _require_compiled()
    from tests.unit.sip.test_written_initialisers import WRITTEN_OUT

    interpreted = [cls for cls in WRITTEN_OUT if isinstance(cls.__init__, types.FunctionType)]
    assert interpreted == []
