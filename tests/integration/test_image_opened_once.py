"""What is checked is what is read: `image cp` opens the image file once, judges
the file opened, and reads only through it. A name swapped for a symlink into
a restricted directory, after the check and before the data is read, must not
get the restricted file onto the LUN.

The swap is made deterministic by wrapping a step of cp (making the volume and
target, or opening the file) so that it swaps the name, then does its work.
Real tgtd, file backend, data read back from the backing file and over iSCSI.
"""
import hashlib
import os
from pathlib import Path

import pytest
from support.commands import quiet
from support.driver import action_xml, error_block, read_lun, remote_argv
from support.paths import BIN

from oneiscsi import datastore, source

MIB = 1024 * 1024
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"
CANARY = b"one-iscsi-canary-secret:"


@pytest.fixture
def places(tmp_path):
    """A restricted directory holding a secret image, a public one holding a
    harmless image of the same size, the pool, the config files."""
    restricted, public = tmp_path / "restricted", tmp_path / "public"
    restricted.mkdir()
    public.mkdir()
    secret = restricted / "secret.img"
    secret.write_bytes((CANARY * (MIB // len(CANARY) + 1))[:MIB])
    image = public / "image.img"
    image.write_bytes(os.urandom(MIB))
    return tmp_path


@pytest.fixture
def cp(cli, tgtd, places, monkeypatch):
    """`image cp` of PATH as image ID, in this process, as the remote stub runs it."""
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ.get('PATH', '')}")
    ds = {"BACKEND": "file", "POOL_DIR": str(places / "pool"), "HOST": "localhost",
          "RESTRICTED_DIRS": str(places / "restricted")}

    def run(path: Path, image_id: int, template=None):
        return cli(*remote_argv("datastore", "cp", action_xml({"PATH": str(path)}, template or {}, ds),
                                str(image_id)))

    return run


def swap(name: Path, to: Path) -> None:
    """Make name a symlink to to, in one rename."""
    temporary = name.with_name(name.name + ".swap")
    temporary.symlink_to(to)
    os.replace(temporary, name)


def swapping_create(monkeypatch, name: Path, to: Path) -> list:
    """Make datastore._create swap name for a link to to before it makes the
    volume and target; returns the list of swaps done."""
    done, really_create = [], datastore._create

    def create(*args, **options):
        swap(name, to)
        done.append(name)
        return really_create(*args, **options)

    monkeypatch.setattr(datastore, "_create", create)
    return done


def lun_holds(tgtd, places: Path, image_id: int, expected: bytes) -> None:
    backing = (places / "pool" / "vg-one" / f"lv-one-{image_id}").read_bytes()
    assert CANARY not in backing
    assert backing[:len(expected)] == expected
    lun = read_lun(tgtd, IQN.format(image_id), places / "lun.raw")
    assert CANARY not in lun
    assert lun[:len(expected)] == expected


def nothing_made(tgtd, places: Path) -> None:
    assert tgtd.target_ids() == []
    assert not (places / "pool").exists() or not any((places / "pool").rglob("lv-one-*"))
    conf_dir = places / "tgt-conf.d" / "one-iscsi"
    assert not conf_dir.exists() or not any(conf_dir.iterdir())


def qcow2_of(raw: Path) -> Path:
    qcow2 = raw.with_suffix(".qcow2")
    done = quiet(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)])
    assert done.returncode == 0, done.stderr
    return qcow2


def test_a_name_swapped_while_the_volume_is_made_copies_the_file_checked(tgtd, cp, places, monkeypatch):
    image = places / "public" / "image.img"
    harmless = image.read_bytes()
    swaps = swapping_create(monkeypatch, image, places / "restricted" / "secret.img")
    done = cp(image, 41, {"MD5": hashlib.md5(harmless).hexdigest()})
    assert done.rc == 0, done.err
    assert done.out == f"{IQN.format(41)} 1\n"
    assert swaps == [image] and image.resolve() == places / "restricted" / "secret.img"
    lun_holds(tgtd, places, 41, harmless)


def test_a_qcow2_name_swapped_after_opening_copies_the_file_opened(tgtd, cp, places, monkeypatch):
    harmless = (places / "public" / "image.img").read_bytes()
    image = qcow2_of(places / "public" / "image.img")
    checksum = hashlib.md5(image.read_bytes()).hexdigest()
    secret = qcow2_of(places / "restricted" / "secret.img")  # a name-based read would succeed, with the canary
    swaps = swapping_create(monkeypatch, image, secret)
    done = cp(image, 42, {"MD5": checksum})
    assert done.rc == 0, done.err
    assert done.out == f"{IQN.format(42)} 1\n"
    assert swaps == [image] and image.resolve() == secret
    lun_holds(tgtd, places, 42, harmless)


def test_a_path_that_is_a_link_into_the_restricted_directory_is_refused(tgtd, cp, places):
    link = places / "public" / "link.img"
    link.symlink_to(places / "restricted" / "secret.img")
    done = cp(link, 43)
    assert done.rc == 2
    assert error_block(done.err) == f"Not allowed to copy image file {link}"
    nothing_made(tgtd, places)


def test_a_name_swapped_between_the_check_by_name_and_opening_is_refused(tgtd, cp, places, monkeypatch):
    image = places / "public" / "image.img"
    really_open = source._open

    def swap_then_open(path):
        swap(image, places / "restricted" / "secret.img")
        return really_open(path)

    monkeypatch.setattr(source, "_open", swap_then_open)
    done = cp(image, 44)
    assert done.rc == 2
    assert error_block(done.err) == f"Not allowed to copy image file {image}"
    assert image.resolve() == places / "restricted" / "secret.img"
    nothing_made(tgtd, places)
