"""Datasets: builders (offline, on fixtures), HDF5 cards, import, errors, loading in trials."""
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from harness.cli import main
from harness.data import fetch, load_image_set
from harness.data.catalog import build_dataset, contact_sheet, import_folder, list_datasets, load_built
from harness.data.fetch import DataSourceError
from harness.data.hdf5 import read_card
from harness.errors import ConfigError
from harness.spec import DatasetSpec, parse_trial
from harness.trial import run_trial
from tests.conftest import tiny_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def emoji_package(monkeypatch):
    import harness.data.emoji as emoji

    monkeypatch.setattr(emoji, "npm_package", lambda name, version, dataset: FIXTURES / "emoji-datasource-twitter")


def test_emoji_faces_selects_face_subcategories_without_costume(emoji_package):
    path, image_set = build_dataset("emoji-faces", 16)
    # fixture: grinning, grin (face-smiling), sweat (face-concerned), thinking_face (face-hand);
    # japanese_ogre (face-costume), rat and the pointing hand are excluded
    assert image_set.images.shape == (4, 4, 16, 16)
    card = read_card(path)
    for key in ("name", "source", "version", "licence", "resolution", "count", "fingerprint", "build"):
        assert key in card, key
    assert card["count"] == 4 and card["resolution"] == 16 and "CC-BY-4.0" in card["licence"]
    # composited on white: the corners are white and transparent
    assert (image_set.images[:, :3, 0, 0] == 255).all() and (image_set.images[:, 3, 0, 0] == 0).all()
    # the face is yellow-ish in the middle
    centre = image_set.images[0, :3, 8, 8].astype(int)
    assert centre[0] > 150 and centre[1] > 100 and centre[2] < 120


def test_builds_are_deterministic(emoji_package):
    _, first = build_dataset("emoji-faces", 16)
    _, second = build_dataset("emoji-faces", 16)
    assert first.fingerprint == second.fingerprint
    _, other = build_dataset("emoji-faces", 32)
    assert other.fingerprint != first.fingerprint


def test_lfw_faces_from_scikit_image():
    path, image_set = build_dataset("lfw-faces", 32)
    assert image_set.images.shape == (100, 3, 32, 32)
    assert (image_set.images[:, 0] == image_set.images[:, 1]).all()  # grayscale
    assert image_set.images.std() > 20  # real photos, not a constant
    assert build_dataset("lfw-faces", 32)[1].fingerprint == image_set.fingerprint


def test_unown_renders_svgs(monkeypatch, tmp_path):
    import harness.data.unown as unown

    folder = tmp_path / "package" / "sprites" / "pokemon" / "other" / "dream-world"
    folder.mkdir(parents=True)
    for i, form in enumerate(unown.FORMS):  # stand-in glyphs: a disc whose radius encodes the form
        (folder / f"201-{form}.svg").write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="120">'
            f'<circle cx="50" cy="60" r="{10 + i}" fill="#333"/></svg>')
    monkeypatch.setattr(unown, "npm_package", lambda *a: tmp_path / "package")
    _, image_set = build_dataset("unown", 28)
    assert image_set.images.shape == (28, 4, 28, 28)
    coverage = (image_set.images[:, 3] > 127).mean(axis=(1, 2))
    assert (np.diff(coverage) >= 0).all() and coverage[-1] > coverage[0]  # radius grows with the form
    assert list(image_set.labels) == list(range(28))


def _rgba_png(path, size, colour, box):
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), colour), box[:2])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def test_objects_masked_and_portraits(monkeypatch, tmp_path):
    import harness.data.objects as objects
    import harness.data.portraits as portraits

    stamps = tmp_path / "root" / "usr" / "share" / "tuxpaint" / "stamps"
    for i in range(6):
        _rgba_png(stamps / f"animals/a{i}.png", (60, 40), (200, 30 * i, 40, 255), (10, 5, 50, 35))
    Image.new("RGB", (20, 20), "red").save(stamps / "opaque.png")  # no cut-out: skipped
    (stamps / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    portraits_dir = tmp_path / "root" / "usr/share/games/wesnoth/1.16/data/core/images/portraits"
    for i in range(3):
        _rgba_png(portraits_dir / f"p{i}.png", (40, 40), (10, 200, 10 * i, 255), (5, 5, 35, 40))
    monkeypatch.setattr(objects, "debian_package", lambda *a: tmp_path / "root")
    monkeypatch.setattr(portraits, "debian_package", lambda *a: tmp_path / "root")
    path, image_set = build_dataset("objects-masked", 32)
    assert image_set.images.shape == (6, 4, 32, 32)
    card = read_card(path)
    assert card["skipped_no_alpha_or_unreadable"] == 2
    mask = image_set.images[:, 3] > 127
    assert ((mask.mean(axis=(1, 2)) >= 0.15)).all()
    # inside the mask the object's red dominates; outside it is a photograph (varied pixels)
    rgb = image_set.images[:, :3].astype(int)
    assert (rgb[:, 0][mask] > 150).mean() > 0.9
    assert rgb[0, :, ~mask[0]].std() > 5
    _, faces = build_dataset("portraits", 16)
    assert faces.images.shape == (3, 4, 16, 16)


def test_import_skips_corrupt_and_counts(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(3):
        _rgba_png(folder / f"ok{i}.png", (50, 30), (0, 0, 255, 255), (10, 0, 40, 30))
    good = (folder / "ok0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, not counted")
    path, image_set, skipped = import_folder(folder, "mine", 16, mask="alpha")
    assert image_set.images.shape == (3, 4, 16, 16)
    assert sorted(Path(s).name for s in skipped) == ["garbage.jpg", "truncated.png"]
    card = read_card(path)
    assert card["skipped"] == 2 and card["files"] == 5
    # centre square crop of a 50 x 30 image: the blue box spans it fully after cropping
    assert (image_set.images[:, 2] > 200).all()
    _, rgb_only, _ = import_folder(folder, "mine-rgb", 16)
    assert rgb_only.images.shape[1] == 3
    # imported sets are listed and load by name in a trial
    names = {row["name"]: row for row in list_datasets()}
    assert names["mine"]["count"] == 3 and names["mine"]["built"]
    result = run_trial(tiny_config(**{"dataset.name": "mine", "dataset.kwargs": {}, "dataset.channels": 4,
                                      "optimization.iterations": 4}), tmp_path / "t")
    env = json.loads((tmp_path / "t" / "env.json").read_text())
    assert result.status == "completed" and env["dataset_fingerprint"] == image_set.fingerprint


def test_import_errors(tmp_path):
    with pytest.raises(ConfigError, match="^FOLDER"):
        import_folder(tmp_path / "absent", "x", 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bad.png").write_bytes(b"nope")
    with pytest.raises(ConfigError, match="at least one readable image"):
        import_folder(empty, "x", 16)
    with pytest.raises(ConfigError, match="^--name"):
        import_folder(empty, "emoji-faces", 16)
    with pytest.raises(ConfigError, match="^--name"):
        import_folder(empty, "../escape", 16)


def test_unbuilt_dataset_is_an_early_error():
    spec = parse_trial(tiny_config(**{"dataset.name": "emoji-faces", "dataset.kwargs": {}}))
    with pytest.raises(ConfigError, match="ganbench data build emoji-faces --resolution 16"):
        load_image_set(spec.dataset)
    with pytest.raises(ConfigError, match="^dataset.name.*registered dataset"):
        parse_trial(tiny_config(**{"dataset.name": "not-a-dataset", "dataset.kwargs": {}}))


def test_wrong_resolution_names_the_built_ones(emoji_package):
    build_dataset("emoji-faces", 32)
    spec = DatasetSpec(name="emoji-faces", resolution=16)
    with pytest.raises(ConfigError, match=r"^dataset.resolution.*built here at: 32"):
        load_image_set(spec)


def test_missing_tools_say_so_and_show_import(monkeypatch):
    monkeypatch.setattr(fetch.shutil, "which", lambda tool: None)
    with pytest.raises(DataSourceError, match="needs `npm`.*ganbench data import"):
        build_dataset("emoji-faces", 32)
    with pytest.raises(DataSourceError, match="needs `apt-get`.*ganbench data import"):
        build_dataset("portraits", 32)


def test_npm_fetch_with_a_stand_in_client(tmp_path, monkeypatch):
    """The real npm_package code path, with an `npm` on PATH that serves a local tarball."""
    tgz = tmp_path / "pkg-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        data = b'{"name": "pkg"}'
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\n# npm pack NAME --silent --pack-destination DIR\ncp "{tgz}" "$5/"\necho pkg-1.0.0.tgz\n')
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    package = fetch.npm_package("pkg", "1.0.0", "test")
    assert json.loads((package / "package.json").read_text()) == {"name": "pkg"}
    npm.write_text("#!/bin/sh\nexit 1\n")  # cached: the client is not called again
    assert fetch.npm_package("pkg", "1.0.0", "test") == package


def test_biggan_pytorch_file_loads_via_cli_show(tmp_path, capsys):
    imgs = np.random.default_rng(0).integers(0, 256, size=(10, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "ILSVRC128.hdf5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("imgs", data=imgs)
        fh.create_dataset("labels", data=np.arange(10))
    image_set = load_built(str(path))
    assert np.array_equal(image_set.images, imgs) and list(image_set.labels) == list(range(10))
    assert main(["data", "show", str(path), "--out", str(tmp_path / "sheet.png")]) == 0
    assert Image.open(tmp_path / "sheet.png").size == (16 * 9 + 1, 9 + 1)


def test_contact_sheet_has_mask_rows(tmp_path):
    from harness.data import ImageSet

    images = np.zeros((20, 4, 8, 8), np.uint8)
    images[:, 3] = 255
    sheet = contact_sheet(ImageSet(images, "x"), tmp_path / "s.png", columns=10)
    arr = np.asarray(Image.open(sheet))
    assert arr.shape == (2 * 2 * 9 + 1, 10 * 9 + 1, 3)
    assert arr[10, 1].tolist() == [255, 255, 255]  # a mask row under the first RGB row


def test_cli_data_list_build_show(emoji_package, tmp_path, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "emoji-faces" in out and "shapes" in out and "CC-BY-4.0" in out
    assert main(["data", "build", "emoji-faces", "--resolution", "16"]) == 0
    assert "4 images" in capsys.readouterr().out
    assert main(["data", "build", "emoji-faces", "--resolution", "16"]) == 0
    assert "already built" in capsys.readouterr().out
    assert main(["data", "build", "emoji-faces", "--resolution", "16", "--force"]) == 0
    assert "4 images" in capsys.readouterr().out
    assert main(["data", "show", "emoji-faces", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()
    assert main(["data", "show", "lfw-faces", "--out", str(tmp_path / "t.png")]) == 2
    assert "ganbench data build lfw-faces" in capsys.readouterr().err
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["emoji-faces"]["resolutions"] == [16] and rows["emoji-faces"]["count"] == 4


def test_loaded_once_per_process_and_reloaded_when_rebuilt(emoji_package):
    build_dataset("emoji-faces", 16)
    spec = DatasetSpec(name="emoji-faces", resolution=16)
    first = load_image_set(spec)
    assert load_image_set(spec) is first  # the same worker does not read the file again
    assert not first.images.flags.writeable
    build_dataset("emoji-faces", 16)  # a rebuilt file is a new file: reloaded
    assert load_image_set(spec) is not first
    assert load_image_set(DatasetSpec(name="emoji-faces", resolution=16, limit=2)).images.shape[0] == 2


def test_real_only_horizontal_flip():
    import torch

    from harness.data import ImageSet, TrainingData

    images = np.zeros((2, 3, 4, 4), np.uint8)
    images[:, :, :, 0] = 255  # a white left column
    data = TrainingData(ImageSet(images, "x"), torch.device("cpu"), hflip=True)
    batch = data.batch(torch.tensor([0, 1]), torch.tensor([True, False]))
    assert batch[0, 0, 0, -1] == 1 and batch[0, 0, 0, 0] == -1  # flipped: column moved right
    assert batch[1, 0, 0, 0] == 1  # not flipped
    plain = TrainingData(ImageSet(images, "x"), torch.device("cpu"), hflip=False)
    assert plain.batch(torch.tensor([0]), torch.tensor([True]))[0, 0, 0, 0] == 1
    four = TrainingData(ImageSet(np.zeros((1, 4, 4, 4), np.uint8), "y"), torch.device("cpu"))
    assert four.rgb.shape == (1, 3, 4, 4)  # metrics see the RGB view of RGB + mask data


def test_cli_data_import_and_list(tmp_path, capsys):
    folder = tmp_path / "imgs"
    for i in range(2):
        _rgba_png(folder / f"ok{i}.png", (20, 20), (0, 255, 0, 255), (0, 0, 20, 20))
    (folder / "bad.png").write_bytes(b"broken")
    assert main(["data", "import", str(folder), "--name", "greens", "--resolution", "8", "--mask", "alpha",
                 "--licence", "CC0"]) == 0
    out = capsys.readouterr().out
    assert "2 images imported, 1 unreadable skipped" in out and "bad.png" in out
    assert main(["data", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["greens"]["licence"] == "CC0" and rows["greens"]["count"] == 2
    assert main(["data", "import", str(folder), "--name", "shapes", "--resolution", "8"]) == 2
    assert "--name" in capsys.readouterr().err
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "architecture: biggan, dcgan, progressive, resnet" in listing and "fd_effnet" in listing
