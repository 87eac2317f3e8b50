"""Image recipes, lock files and Dockerfiles: both ways of building an image (Docker, or
`make images` without it) install the same hashed lock, and the locks cover pyproject."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conch.builders.deployment import GATE_BINARY
from conch.dev import imagebuild, images
from conch.dev.imagerun import Mount, container_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": ROOT / "operator" / "Dockerfile",
    "runtime": ROOT / "runtime" / "Dockerfile",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_recipes_load_with_tagged_references_and_existing_locks() -> None:
    base, recipes = images.load()
    assert base.suite == "bookworm"
    assert set(recipes) == {"runtime", "operator", "triton"}
    for recipe in recipes.values():
        assert (ROOT / "images" / recipe.lock).is_file()
        assert recipe.tag == "0.1.0"
        assert not recipe.user.startswith("0")  # never root


def test_unknown_recipe_field_is_an_error(tmp_path: Path) -> None:
    text = (
        ROOT / "images" / "images.toml"
    ).read_text() + '\n[image.x]\nreference = "x:1"\nlok = "a"\n'
    path = tmp_path / "images.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match="unknown fields"):
        images.load(path)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_installs_the_recipes_lock_with_hashes(name: str) -> None:
    _, recipes = images.load()
    text = DOCKERFILES[name].read_text()
    locks = set(re.findall(r"source=(images/locks/[\w.-]+)", text))
    assert locks == {f"images/{recipes[name].lock}"}
    (install,) = [line for line in text.splitlines() if "-r /tmp/lock.txt" in line]
    assert "--require-hashes" in install and "--no-deps" in install
    builder = images.pip_install_args("/tmp/lock.txt", "/wheels")
    assert {"--require-hashes", "--no-deps", "--no-index"} <= set(builder)
    # The conch wheel itself comes in without dependencies on both paths.
    assert re.search(r"pip install .*--no-deps .*conch-\*\.whl", text)


@pytest.mark.parametrize("extra", ["runtime", "operator"])
def test_lock_pins_every_requirement_of_the_extra_and_hashes_each(extra: str) -> None:
    _, recipes = images.load()
    text = (ROOT / "images" / recipes[extra].lock).read_text()
    pinned = {p.split("==")[0] for p in images.lock_references(text)}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]
    ]
    for req in wanted:
        assert _normalize(req.name) in pinned, req
    # Every pin carries a hash: as many requirement blocks as pins with --hash lines.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert len(blocks) == len(pinned)
    assert all("--hash=sha256:" in block for block in blocks)


def test_triton_lock_pins_its_in_file() -> None:
    """The Triton image carries what `python`-format packages import (torch and numpy; int8
    packages are frozen TorchScript), at the versions images/triton.in names."""
    lines = (ROOT / "images" / "triton.in").read_text().splitlines()
    wanted = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    pinned = images.lock_references((ROOT / "images" / "locks" / "triton.txt").read_text())
    assert wanted <= pinned
    assert {"torch", "numpy"} <= {p.split("==")[0] for p in pinned}


def test_lock_references_normalize_names_and_skip_hashes() -> None:
    text = (
        "Typing_Extensions==4.1 \\\n    --hash=sha256:ab\nnumpy==1.26.4 ; python_version < '3.12'\n"
    )
    assert images.lock_references(text) == {"typing-extensions==4.1", "numpy==1.26.4"}


def test_image_key_follows_the_lock_and_the_project_source(tmp_path: Path) -> None:
    (tmp_path / "images" / "locks").mkdir(parents=True)
    (tmp_path / "images" / "locks" / "pip.txt").write_text("pip==1\n")
    lock = tmp_path / "images" / "locks" / "a.txt"
    lock.write_text("six==1\n")
    for relative in images.PROJECT_SOURCES:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith((".toml", ".md")):
            target.write_text("x")
        else:
            target.mkdir()
            (target / "m.py").write_text("x = 1\n")
    plain = images.Recipe(name="a", reference="r:1", lock="locks/a.txt", user="1000:1000")
    with_src = images.Recipe(
        name="a", reference="r:1", lock="locks/a.txt", user="1000:1000", extra="e"
    )
    keys = {images.image_key(plain, "b", tmp_path), images.image_key(with_src, "b", tmp_path)}
    (tmp_path / "runtime" / "conch_runtime" / "m.py").write_text("x = 2\n")
    assert images.image_key(plain, "b", tmp_path) in keys  # no conch inside: unchanged
    assert images.image_key(with_src, "b", tmp_path) not in keys
    lock.write_text("six==2\n")
    assert images.image_key(plain, "b", tmp_path) not in keys
    assert images.image_key(plain, "other-base", tmp_path) != images.image_key(plain, "b", tmp_path)


def test_lock_commands_resolve_for_the_images_python_with_hashes() -> None:
    base, recipes = images.load()
    commands = images.lock_commands(base, recipes.values())
    outputs = [c[c.index("-o") + 1] for c in commands]
    assert sorted(outputs) == sorted(
        ["images/locks/pip.txt", *(f"images/{r.lock}" for r in recipes.values())]
    )
    for command in commands:
        assert "--generate-hashes" in command
        assert command[command.index("--python-version") + 1] == base.python


def test_container_config_is_read_only_with_tmp_and_mounts() -> None:
    image = {
        "process": {"args": ["/bin/a"], "user": {"uid": 1000, "gid": 1000}, "terminal": True},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/tmp", "type": "bind"}, {"destination": "/proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]},
    }
    config = container_config(
        image,
        Path("/r"),
        command=["/bin/b", "x"],
        mounts=(Mount(Path("/host"), "/models"),),
        user=(7, 8),
    )
    assert config["root"] == {"path": "/r", "readonly": True}
    assert config["process"]["args"] == ["/bin/b", "x"]
    assert config["process"]["user"] == {"uid": 7, "gid": 8}
    assert config["process"]["terminal"] is False
    tmp = [m for m in config["mounts"] if m["destination"] == "/tmp"]
    assert [m["type"] for m in tmp] == ["tmpfs"]
    assert {
        "destination": "/models",
        "type": "bind",
        "source": "/host",
        "options": ["rbind", "ro"],
    } in config["mounts"]
    assert {"type": "network"} in config["linux"]["namespaces"]
    assert image["process"]["args"] == ["/bin/a"]  # the image's own config is not changed
    shared = container_config(image, Path("/r"), host_network=True)
    assert {"type": "network"} not in shared["linux"]["namespaces"]


def test_a_moved_image_cache_still_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """result.json records absolute paths; a cache moved (or reached through another
    CONCH_CACHE) is read from where it is now."""
    monkeypatch.setenv("CONCH_CACHE", str(tmp_path / "now"))
    key = "ab" * 32
    folder = imagebuild.images_root() / key[:32]
    folder.mkdir(parents=True)
    before = tmp_path / "then" / "images" / key[:32]
    recorded = imagebuild.Built(
        name="triton",
        reference="example.invalid/triton:1",
        key=key,
        archive=str(before / "triton.oci.tar"),
        layout=str(before / "layout"),
        digest="sha256:" + "c" * 64,
        compressed_bytes=1,
        uncompressed_bytes=2,
        build_seconds=3.0,
    )
    (folder / "result.json").write_text(json.dumps(dataclasses.asdict(recorded)))
    found = imagebuild._cached(key)
    assert found is not None
    assert found.archive == str(folder / "triton.oci.tar")
    assert found.layout == str(folder / "layout")
    assert found.digest == recorded.digest
    assert imagebuild._cached("cd" * 32) is None


def test_the_runtime_image_carries_the_gate_on_both_build_paths(tmp_path: Path) -> None:
    """The serving pods run /usr/local/bin/conch-gate from the runtime image: the recipe
    builds it from runtime/gate, the Dockerfile too, and the image key follows its source."""
    _, recipes = images.load()
    assert recipes["runtime"].go == ("runtime/gate",)
    assert "/usr/local/bin/conch-" + Path(recipes["runtime"].go[0]).name == GATE_BINARY
    text = DOCKERFILES["runtime"].read_text()
    assert "COPY runtime/gate/" in text and f"/conch-gate {GATE_BINARY}" in text
    key = images.image_key(recipes["runtime"], "b")
    gate = dataclasses.replace(recipes["runtime"], go=())
    assert images.image_key(gate, "b") != key  # the Go source is part of the key


def test_go_binaries_need_the_conch_layer(tmp_path: Path) -> None:
    path = tmp_path / "images.toml"
    path.write_text(
        (ROOT / "images" / "images.toml").read_text()
        + '\n[image.x]\nreference = "x:1"\nlock = "a"\nuser = "1:1"\ngo = ["runtime/gate"]\n'
    )
    with pytest.raises(ValueError, match="set extra"):
        images.load(path)


def test_go_binaries_change_only_the_keys_of_images_that_carry_them() -> None:
    """A recipe without Go binaries keys as it did before the field existed (a Triton image
    rebuild costs minutes on every machine that has it cached)."""
    _, recipes = images.load()
    assert "go=" not in repr(recipes["triton"])
    runtime = recipes["runtime"]
    assert images.image_key(runtime, "b") != images.image_key(
        dataclasses.replace(runtime, go=()), "b"
    )
