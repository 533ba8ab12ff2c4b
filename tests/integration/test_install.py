"""`one-iscsi install` into a temporary tree, and the package as users get it:
a wheel and an sdist (`make dist`) carrying remotes, completions and man page,
installed with pipx."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv, **env):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_install_into_a_tree_keeps_an_existing_iscsi_conf(cli, tmp_path):
    remotes, share = tmp_path / "remotes", tmp_path / "share"
    (remotes / "datastore" / "iscsi").mkdir(parents=True)
    (remotes / "datastore" / "iscsi" / "iscsi.conf").write_text("HOST=mine\n")
    (remotes / "datastore" / "iscsi" / "iscsi.conf").chmod(0o644)
    preview = cli("--dry-run", "install", "--prefix", str(remotes), "--share", str(share))
    assert f"keep {remotes}/datastore/iscsi/iscsi.conf (exists)" in preview.out.splitlines()
    assert not (remotes / "tm").exists()
    done = cli("install", "--prefix", str(remotes), "--share", str(share))
    assert done.rc == 0, done.err
    assert (remotes / "datastore" / "iscsi" / "iscsi.conf").read_text() == "HOST=mine\n"
    assert stat.S_IMODE((remotes / "datastore" / "iscsi" / "iscsi.conf").stat().st_mode) == 0o644
    for action in ("cp", "mkfs", "rm", "stat", "monitor"):
        assert os.access(remotes / "datastore" / "iscsi" / action, os.X_OK)
    for action in ("ln", "clone", "mvds", "mv", "delete"):
        assert os.access(remotes / "tm" / "iscsi" / action, os.X_OK)
    assert (share / "zsh" / "site-functions" / "_one-iscsi").read_text().startswith("#compdef one-iscsi")
    man = run(["man", "one-iscsi"], MANPATH=str(share / "man"), MANWIDTH="80")
    assert man.returncode == 0 and "one-iscsi - iSCSI datastore driver for OpenNebula" in man.stdout
    bash = run(["bash", "--norc", "-c",
                f"source {share}/bash-completion/completions/one-iscsi; COMP_LINE='one-iscsi ta'; COMP_POINT=12; "
                "COMP_WORDS=(one-iscsi ta); COMP_CWORD=1; "
                "_one_iscsi_completion one-iscsi; echo ${COMPREPLY[@]}"], PATH=f"{BIN}:{os.environ['PATH']}")
    assert bash.stdout.split() == ["target"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another owner needs root")
def test_a_new_iscsi_conf_is_private_to_the_owner_of_the_remotes_tree(cli, tmp_path):
    remotes, share = tmp_path / "remotes", tmp_path / "share"
    remotes.mkdir()
    os.chown(remotes, 4321, 4322)  # as oneadmin owns /var/lib/one/remotes
    conf = remotes / "datastore" / "iscsi" / "iscsi.conf"
    preview = cli("--dry-run", "install", "--prefix", str(remotes), "--share", str(share))
    [line] = [line for line in preview.out.splitlines() if line.endswith(f" {conf}")]
    assert line.startswith("install -m 600 -o 4321 -g 4322 ")
    done = cli("install", "--prefix", str(remotes), "--share", str(share))
    assert done.rc == 0, done.err
    status = conf.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid) == (0o600, 4321, 4322)
    cp = (remotes / "datastore" / "iscsi" / "cp").stat()
    assert (stat.S_IMODE(cp.st_mode), cp.st_uid) == (0o755, 0)


def test_refused_install_is_one_line(cli, tmp_path):
    remotes = tmp_path / "remotes"
    remotes.mkdir()
    (remotes / "datastore").write_text("")
    done = cli("install", "--prefix", str(remotes), "--share", str(tmp_path / "share"))
    assert done.rc == 1 and len(done.err.splitlines()) == 1
    assert done.err.startswith(f"one-iscsi: error: cannot install {remotes}/datastore/iscsi/")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_install_into_a_remotes_tree_that_does_not_exist_is_refused(cli, tmp_path, dry_run):
    done = cli(*dry_run, "install", "--prefix", str(tmp_path / "nonexistent" / "remotes"),
               "--share", str(tmp_path / "share"))
    assert (done.rc, done.out) == (2, "")
    assert done.err == (f"one-iscsi: error: {tmp_path}/nonexistent/remotes is not a directory: --prefix is "
                        "OpenNebula's remotes tree (/var/lib/one/remotes, or $ONE_LOCATION/var/remotes)\n")
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "share").exists()


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "build", "--outdir", out, REPO])
    assert built.returncode == 0, built.stderr[-2000:]
    return out


def test_sdist_carries_remotes_completions_and_man_page(dist):
    import tarfile

    [sdist] = dist.glob("*.tar.gz")
    names = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    assert {"remotes/datastore/iscsi/cp", "remotes/tm/iscsi/ln", "remotes/datastore/iscsi/iscsi.conf",
            "completions/_one-iscsi", "man/one-iscsi.1", "pyproject.toml"} <= names


def test_pipx_install_of_the_wheel_gives_a_working_one_iscsi(dist, tmp_path):
    [wheel] = dist.glob("*.whl")
    env = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man")}
    done = run([BIN / "pipx", "install", wheel], **env)
    assert done.returncode == 0, done.stderr[-2000:]
    one_iscsi = tmp_path / "bin" / "one-iscsi"
    parsed = run([one_iscsi, "iqn", "lv-name", "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"])
    assert (parsed.returncode, parsed.stdout) == (0, "lv-one-7\n")
    assert (tmp_path / "man" / "man1" / "one-iscsi.1").read_text() == (REPO / "man" / "one-iscsi.1").read_text()
    remotes, share = tmp_path / "remotes", tmp_path / "share"
    remotes.mkdir()
    installed = run([one_iscsi, "install", "--prefix", remotes, "--share", share])
    assert installed.returncode == 0, installed.stderr
    assert str(tmp_path / "pipx") in installed.stderr  # from the package's own share directory
    assert os.access(remotes / "datastore" / "iscsi" / "cp", os.X_OK)
    assert (share / "man" / "man1" / "one-iscsi.1").read_text() == (REPO / "man" / "one-iscsi.1").read_text()
