"""What a user sees when things go wrong: one line on stderr, the right exit status."""
import random

from support.commands import quiet

BASE = "iqn.2012-02.org.opennebula:localhost.vg-one"


def test_tgtd_not_running_names_tgtd_and_host(cli, monkeypatch):
    control = next(c for c in iter(lambda: random.randint(20000, 30000), None)
                   if quiet(["tgtadm", "-C", str(c), "--op", "show", "--mode", "sys"]).returncode == 107)
    monkeypatch.setenv("ONE_ISCSI_TGTADM", f"tgtadm -C {control}")
    result = cli("target", "list")
    assert result.rc == 1
    assert result.out == ""
    assert result.err.startswith("one-iscsi: error: tgtd is not running on localhost: start it (systemctl start "
                                 "tgt), then `one-iscsi -H localhost target restore`: tgtadm failed on localhost "
                                 "(exit 107)")
    assert len(result.err.splitlines()) == 1


def test_invalid_iqn_exits_2_before_running_anything(cli, monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_TGTADM", "/nonexistent/tgtadm")
    result = cli("target", "new", "iqn.2012-02.org.opennebula:host.vg_one.lv-one-1")
    assert result.rc == 2
    assert result.err == ("one-iscsi: error: IQN 'iqn.2012-02.org.opennebula:host.vg_one.lv-one-1' "
                          "contains characters tgtd refuses: '_'\n")


def test_unknown_tid_is_a_clear_message(tgtd, cli):
    result = cli("target", "delete", "42")
    assert (result.rc, result.err) == (1, "one-iscsi: error: no target with TID 42 on localhost\n")
    bind = cli("target", "bind-all", "42")
    assert (bind.rc, bind.err) == (1, "one-iscsi: error: no target with TID 42 on localhost\n")


def test_tid_must_be_positive(cli):
    for args in (["target", "bind-all", "0"], ["target", "delete", "0"], ["lun", "bind", "-1", "/x"]):
        result = cli(*args)
        assert result.rc == 2, args
        assert len(result.err.splitlines()) == 1


def test_usage_error_is_one_line(cli):
    result = cli("target", "new")
    assert (result.rc, result.err) == (
        2, "one-iscsi target new: error: Missing argument 'IQN'. (see 'one-iscsi target new --help')\n")


def test_bad_configuration_is_one_line(cli, tmp_path):
    conf = tmp_path / "iscsi.conf"
    conf.write_text("BASE_TID=zero\n")
    result = cli("--config", str(conf), "iqn", "build", "--lv", "lv-one-1")
    assert (result.rc, result.err) == (
        2, f"one-iscsi: error: BASE_TID must be an integer from 1 to 2147483647, got 'zero' (from {conf}:1)\n")


def test_target_with_session_is_not_deleted_without_force(tgtd, cli, tmp_path):
    """A live session is held by qemu-nbd reading the LUN through libiscsi."""
    import subprocess
    from support.daemons import session_on

    iqn = f"{BASE}.lv-one-1"
    store = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "8M", str(store)], check=True)
    for args in (["target", "new", iqn], ["target", "bind-all", "1"], ["lun", "bind", "1", str(store)]):
        assert cli(*args).rc == 0
    with session_on(tgtd, iqn):
        refused = cli("target", "delete", iqn)
        assert refused.rc == 1
        assert refused.err == ("one-iscsi: error: target TID 1 on localhost still has sessions: "
                               "log the initiators out first, or use --force\n")
        assert tgtd.target_ids() == [1]
        assert cli("target", "delete", "--force", iqn).rc == 0
        assert tgtd.target_ids() == []
