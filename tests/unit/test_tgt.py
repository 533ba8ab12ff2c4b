import subprocess

import pytest

from oneiscsi import tgt
from oneiscsi.errors import AlreadyExists, CommandError, NotFound, OneIscsiError
from oneiscsi.units import MIB
from oneiscsi.values import MAX_TID

SHOW = (__import__("pathlib").Path(__file__).parents[1] / "data" / "tgtadm-show-target.txt").read_text()
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-"


def test_bind_address_argv():
    assert list(tgt.bind_address(3, "ALL").argv) == [
        "tgtadm", "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "3",
        "--initiator-address", "ALL"]


def test_new_lun_argv_keeps_path_as_one_word():
    assert list(tgt.new_lun(3, "/srv/a b;c.img").argv) == [
        "tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "3",
        "--lun", "1", "--backing-store", "/srv/a b;c.img"]
    assert tgt.new_lun(3, "/dev/x", lun=2).argv[-3:] == ("2", "--backing-store", "/dev/x")


def test_delete_target_argv():
    assert list(tgt.delete_target(4).argv) == [
        "tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "4"]
    assert list(tgt.delete_target(4, force=True).argv) == [
        "tgtadm", "--lld", "iscsi", "--op", "delete", "--force", "--mode", "target", "--tid", "4"]


def test_show_targets_argv():
    assert list(tgt.show_targets().argv) == ["tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target"]


def test_show_is_a_query_and_changes_are_privileged():
    assert tgt.show_targets().query and tgt.show_targets().privileged
    assert not tgt.delete_target(1).query


def test_account_password_is_secret():
    account = tgt.new_account("user", "s3cret-pass-12")
    assert account.argv[-1] == "s3cret-pass-12" and account.masked()[-1] == "********"


def failed(stderr, rc=22):
    return CommandError("tgtadm", "tgt1", rc, stderr)


@pytest.mark.parametrize("cmd, stderr, kind, message", [
    (tgt.new_account("u", "p" * 12), "tgtadm: this account already exists", AlreadyExists, "account u"),
    (tgt.delete_target(4), "tgtadm: can't find the target", NotFound, "no target with TID 4 on tgt1"),
    (tgt.delete_target(4), "tgtadm: this target is still active", Exception, "TID 4 on tgt1 still has sessions"),
    (tgt.new_lun(4, "/x"), "tgtadm: invalid request", CommandError, "cannot add /x as LUN 1 of TID 4"),
    (tgt.new_lun(4, "/x", 2), "tgtadm: this logical unit number already exists", AlreadyExists,
     "TID 4 on tgt1 already has LUN 2"),
    (tgt.delete_lun(4, 3), "tgtadm: can't find the logical unit", NotFound, "TID 4 on tgt1 has no LUN 3"),
    (tgt.bind_address(4, "10.0.0.5"), "tgtadm: this access control rule already exists", AlreadyExists,
     "10.0.0.5 is already in the ACL of TID 4 on tgt1"),
    (tgt.unbind_initiator_name(4, "iqn.2000-01.x:n"), "tgtadm: this access control rule does not exist", NotFound,
     "iqn.2000-01.x:n is not in the ACL of TID 4 on tgt1"),
    (tgt.unbind_account(4, "u"), "tgtadm: can't find the account", NotFound, "account u is not bound to TID 4"),
    (tgt.delete_account("u"), "tgtadm: can't find the account", NotFound, "no account u on tgt1"),
    (tgt.show_targets(), "tgtadm: can't send the request to the tgt daemon, Transport endpoint is not connected",
     CommandError, "tgtd is not running on tgt1: start it (systemctl start tgt), then `one-iscsi -H tgt1 target "
                   "restore`: tgtadm failed on tgt1"),
])
def test_each_command_explains_its_own_failures(cmd, stderr, kind, message):
    explained = cmd.explain(failed(stderr))
    assert isinstance(explained, kind) and message in str(explained)


def test_unknown_failures_stay_as_they_are():
    assert tgt.delete_target(3).explain(failed("tgtadm: out of memory")) is None


def test_parse_show_of_captured_output():
    """Output captured from tgtd 1.0.85: three targets, two live sessions on
    the first, two LUNs (one path with a space), address/IQN ACLs, an account."""
    first, second, third = tgt.parse_show(SHOW)
    assert (first.tid, first.iqn) == (1, IQN + "5")
    assert first.luns == (tgt.Lun(1, "/tmp/cap/a.img", 64, "disk"),)  # tgtd shows 64 MiB as 67 MB
    assert first.acl == ("ALL",)
    assert len(first.sessions) == 2
    assert first.sessions[0] == tgt.Nexus("iqn.2008-11.org.linux-kvm", ("127.0.0.1",))
    assert (second.tid, second.iqn) == (3, IQN + "50")
    assert [lun.backing_store for lun in second.luns] == ["/tmp/cap/c d.img", "/tmp/cap/b.img"]
    assert [lun.lun for lun in second.luns] == [1, 2]
    assert second.acl == ("192.168.1.0/24", "127.0.0.1", "iqn.1993-08.org.debian:01:abc")
    assert second.accounts == ("joe",)
    assert second.sessions == ()
    assert (third.tid, third.luns, third.acl) == (4, (), ())


def test_parse_show_empty():
    assert tgt.parse_show("") == []


def test_as_dict_counts_sessions():
    data = tgt.parse_show(SHOW)[0].as_dict()
    assert data["sessions"] == 2
    assert data["initiators"] == ["iqn.2008-11.org.linux-kvm"]
    assert data["luns"] == [{"lun": 1, "backing_store": "/tmp/cap/a.img", "size_mib": 64, "type": "disk"}]


def test_find_is_exact_never_a_prefix():
    targets = tgt.parse_show(SHOW)
    assert tgt.find(targets, IQN + "5").tid == 1
    assert tgt.find(targets, IQN + "50").tid == 3
    assert tgt.find(targets, IQN + "0") is None
    assert tgt.find(targets, IQN[:-1]) is None


def test_next_free_tid_is_one_more_than_the_highest_in_use():
    targets = tgt.parse_show(SHOW)  # TIDs 1, 3, 4
    assert tgt.next_free_tid(targets, 1) == 5
    assert tgt.next_free_tid(targets, 9) == 9
    assert tgt.next_free_tid([], 10) == 10
    assert tgt.next_free_tid([*targets, tgt.Target(MAX_TID, IQN + "max")], 1) == 2  # then the lowest free


@pytest.mark.parametrize("text, tid", [("7\n", 7), ("1", 1), ("", None), ("0\n", None), ("x", None), ("٣", None),
                                       (f"{MAX_TID + 1}", None), ("4\n", None)])
def test_parse_hint_takes_a_tid_from_base_on(text, tid):
    assert tgt.parse_hint(text, 5 if text == "4\n" else 1) == tid


def test_read_hint_of_no_file_is_not_found():
    cmd = tgt.read_hint("/run/lock/x.next-tid")
    assert list(cmd.argv) == ["cat", "--", "/run/lock/x.next-tid"] and cmd.query and not cmd.privileged
    assert isinstance(cmd.explain(CommandError("cat", "tgt1", 1, "cat: /run/lock/x.next-tid: No such file")),
                      NotFound)


def test_show_target_mark_and_connections_argv():
    assert list(tgt.show_target(4).argv) == ["tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target",
                                             "--tid", "4"]
    assert list(tgt.mark_targets([(4, IQN + "4"), (5, IQN + "5")], ["sudo", "tgtadm", "-C", "7"]).argv) == [
        "sh", "-c", tgt.MARK_TARGETS, "mark-targets", "sudo tgtadm -C 7", "4", IQN + "4", "5", IQN + "5"]
    assert list(tgt.show_connections(4).argv) == ["tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "conn",
                                                  "--tid", "4"]
    assert tgt.show_target(4).query and tgt.show_connections(4).query and not tgt.mark_targets([], []).query
    missing = CommandError("tgtadm", "tgt1", 22, "tgtadm: can't find the target\n")
    assert str(tgt.show_target(4).explain(missing)) == "no target with TID 4 on tgt1"


def test_parse_mark_of_captured_output():
    """tgtd 1.0.85: the redirect address set, `show --tid` prints it instead of the parameters."""
    assert tgt.parse_mark(f"RedirectAddress={IQN}4\nRedirectPort=\nRedirectReason=Unknown\n") == IQN + "4"
    assert tgt.parse_mark("nop_interval=0\nnop_count=0\nMaxRecvDataSegmentLength=8192\n") == ""
    assert tgt.parse_mark("RedirectCallback=/x\n") == ""


def test_parse_connections_of_captured_output():
    """tgtd 1.0.85, `--op show --mode conn --tid N`: a Session per I_T nexus, a Connection each."""
    text = ("Session: 3\n    Connection: 0\n        Initiator: iqn.2008-11.org.linux-kvm\n"
            "        IP Address: 127.0.0.1\nSession: 5\n    Connection: 0\n        Initiator: iqn.x:node2\n"
            "        IP Address: 10.0.0.6\n    Connection: 1\n        Initiator: iqn.x:node2\n"
            "        IP Address: 10.0.0.7\n")
    assert tgt.parse_connections(text) == (tgt.Nexus("iqn.2008-11.org.linux-kvm", ("127.0.0.1",)),
                                           tgt.Nexus("iqn.x:node2", ("10.0.0.6", "10.0.0.7")))
    assert tgt.parse_connections("") == ()


# NEW_TARGET, run by the local sh with a stand-in tgtadm that keeps targets in a file as tgtd would

def run_new_target(tmp_path, start: int, taken: dict, tries: int = 5, hint: bool = True, max_tid: int = MAX_TID,
                   answer: str = ""):
    """NEW_TARGET for IQN+"new" from start, tgtd having the targets taken
    ({TID: name}); returns (exit status, stdout, stderr, the targets after,
    the hint file's content or None). answer: what tgtadm says instead, to everything."""
    state = tmp_path / "targets"
    state.write_text("".join(f"{tid} {name}\n" for tid, name in taken.items()))
    stand_in = tmp_path / "tgtadm"
    stand_in.write_text(f"""#!/bin/sh
if [ -n "{answer}" ]; then echo "{answer}" >&2; exit 107; fi
while [ $# -gt 0 ]; do
  case $1 in --op) op=$2;; --tid) tid=$2;; --targetname) name=$2;; --value) value=$2;; esac; shift
done
case $op in
  new) if grep -q -e "^$tid " -e " $name\\( \\|$\\)" {state}; then
         echo "tgtadm: this target already exists" >&2; exit 22
       fi
       echo "$tid $name" >> {state} ;;
  show) if ! grep -q "^$tid " {state}; then echo "tgtadm: can't find the target" >&2; exit 22; fi ;;
  update) sed -i "s/^$tid \\(.*\\)/$tid \\1 $value/" {state} ;;
esac
""")
    stand_in.chmod(0o755)
    hint_file = tmp_path / "hint"
    cmd = tgt.new_target_from(start, 1, IQN + "new", [str(stand_in)], tries, str(hint_file) if hint else "")
    argv = [*cmd.argv[:6], str(max_tid), *cmd.argv[7:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    after = dict(line.split(" ", 1) for line in state.read_text().splitlines())
    return (done.returncode, done.stdout, done.stderr, {int(tid): name for tid, name in after.items()},
            hint_file.read_text() if hint_file.exists() else None)


def test_new_target_makes_and_marks_the_target_at_a_free_start_and_leaves_the_next_tid(tmp_path):
    rc, out, err, after, hint = run_new_target(tmp_path, 5, {1: IQN + "1"})
    assert (rc, out, err, hint) == (0, "new 5\n", "", "6\n")
    assert after == {1: IQN + "1", 5: f"{IQN}new {IQN}new"}  # name, then the mark


def test_new_target_tries_the_next_tids_past_taken_ones(tmp_path):
    rc, out, _, after, hint = run_new_target(tmp_path, 5, {5: IQN + "5", 6: IQN + "6"})
    assert (rc, out, hint) == (0, "new 7\n", "8\n")
    assert after[7].startswith(IQN + "new")


def test_new_target_tells_a_taken_name_from_a_taken_tid(tmp_path):
    rc, out, _, after, hint = run_new_target(tmp_path, 5, {5: IQN + "5", 2: IQN + "new"})
    assert (rc, out, hint) == (0, "name 6\n", None)
    assert after == {5: IQN + "5", 2: IQN + "new"}


def test_new_target_gives_up_after_its_tries(tmp_path):
    rc, out, _, after, hint = run_new_target(tmp_path, 5, {tid: IQN + str(tid) for tid in range(5, 12)}, tries=3)
    assert (rc, out, hint) == (0, "taken 7\n", None)


def test_new_target_goes_on_from_base_after_max(tmp_path):
    rc, out, _, _, hint = run_new_target(tmp_path, 9, {9: IQN + "9"}, max_tid=9)
    assert (rc, out, hint) == (0, "new 1\n", "2\n")
    rc, out, _, _, hint = run_new_target(tmp_path, 9, {}, max_tid=9)
    assert (rc, out, hint) == (0, "new 9\n", "1\n")


def test_new_target_with_a_tid_given_tries_only_it_and_leaves_no_hint(tmp_path):
    assert run_new_target(tmp_path, 5, {5: IQN + "5"}, tries=1, hint=False)[:2] == (0, "taken 5\n")
    rc, out, _, _, hint = run_new_target(tmp_path, 6, {5: IQN + "5"}, tries=1, hint=False)
    assert (rc, out, hint) == (0, "new 6\n", None)


def test_new_target_passes_on_other_failures_of_tgtadm(tmp_path):
    down = "tgtadm: can't send the request to the tgt daemon, Transport endpoint is not connected"
    rc, out, err, after, hint = run_new_target(tmp_path, 5, {}, answer=down)
    assert (rc, out, err, after, hint) == (107, "", down + "\n", {}, None)
    explained = tgt.new_target_from(5, 1, IQN + "new", ["tgtadm"]).explain(CommandError("sh", "tgt1", rc, err))
    assert str(explained) == ("tgtd is not running on tgt1: start it (systemctl start tgt), then `one-iscsi -H tgt1 "
                              f"target restore`: tgtadm failed on tgt1 (exit 107): {down}")
    other = tgt.new_target_from(5, 1, IQN + "new", ["tgtadm"]).explain(CommandError("sh", "tgt1", 22, "tgtadm: x"))
    assert str(other) == "tgtadm failed on tgt1 (exit 22): tgtadm: x"


@pytest.mark.parametrize("text, parsed", [("new 5\n", ("new", 5)), ("name 6", ("name", 6)),
                                          ("taken 70\n", ("taken", 70))])
def test_parse_new(text, parsed):
    assert tgt.parse_new(text) == parsed


@pytest.mark.parametrize("text", ["", "made 5", "new", "new x"])
def test_parse_new_of_anything_else_is_an_error(text):
    with pytest.raises(OneIscsiError, match="unexpected answer of the target maker"):
        tgt.parse_new(text)


def test_delete_lun_argv():
    assert list(tgt.delete_lun(4).argv) == [
        "tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "logicalunit", "--tid", "4", "--lun", "1"]
    assert tgt.delete_lun(4, lun=2).argv[-2:] == ("--lun", "2")
    assert tgt.delete_lun(4).privileged


# READD_LUN, run by the local sh with a stand-in tgtadm that answers from a script of replies

def run_readd(tmp_path, busy: int, add_fails: bool = False, tries: int = 5):
    """READD_LUN against a tgtadm that refuses the delete `busy` times with
    `still active`; returns (exit status, stderr, the tgtadm calls)."""
    calls = tmp_path / "calls"
    stand_in = tmp_path / "tgtadm"
    stand_in.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *"--op delete"*) n=$(grep -c -- '--op delete' {calls})
    if [ "$n" -le {busy} ]; then echo "tgtadm: this logical unit is still active" >&2; exit 22; fi ;;
  *"--op new"*) if [ {int(add_fails)} = 1 ]; then echo "tgtadm: invalid request" >&2; exit 22; fi ;;
esac
""")
    stand_in.chmod(0o755)
    cmd = tgt.readd_lun(3, "/dev/vg one/lv-one-7", [str(stand_in), "-C", "7"])
    argv = [*cmd.argv[:6], str(tries), *cmd.argv[7:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stderr, calls.read_text().splitlines() if calls.exists() else []


DELETE = "-C 7 --lld iscsi --op delete --mode logicalunit --tid 3 --lun 1"
ADD = "-C 7 --lld iscsi --op new --mode logicalunit --tid 3 --lun 1 --backing-store /dev/vg one/lv-one-7"


def test_readd_lun_deletes_and_adds_back_to_back(tmp_path):
    assert run_readd(tmp_path, busy=0) == (0, "", [DELETE, ADD])


def test_readd_lun_retries_a_delete_refused_while_commands_are_in_flight(tmp_path):
    assert run_readd(tmp_path, busy=3) == (0, "", [DELETE] * 4 + [ADD])


def test_readd_lun_that_stays_busy_gives_up_without_deleting(tmp_path):
    rc, stderr, calls = run_readd(tmp_path, busy=99, tries=5)
    assert (rc, calls) == (3, [DELETE] * 5)
    assert stderr == "tgtadm: this logical unit is still active\n"


def test_readd_lun_whose_add_fails_says_so_with_another_status(tmp_path):
    rc, stderr, calls = run_readd(tmp_path, busy=0, add_fails=True)
    assert (rc, calls) == (22, [DELETE, ADD])
    assert stderr == "tgtadm: invalid request\n"


@pytest.mark.parametrize("rc, stderr, message", [
    (3, "tgtadm: this logical unit is still active\n",
     f"LUN 1 of TID 3 on tgt1 had commands in flight {tgt.READD_TRIES} times in a row: not added again, "
     "tgtd still reports its old size; try again"),
    (3, "tgtadm: can't find the target\n",
     "could not remove LUN 1 of TID 3 to add it again: sh failed on tgt1 (exit 3): tgtadm: can't find the target"),
    (22, "tgtadm: invalid request\n",
     "TID 3 on tgt1 has no LUN 1 now: adding /dev/vg-one/lv-one-7 again failed (tgtadm: invalid request); "
     "add it with `one-iscsi -H tgt1 lun bind 3 /dev/vg-one/lv-one-7`"),
])
def test_readd_lun_failures_say_what_state_the_lun_is_in(rc, stderr, message):
    cmd = tgt.readd_lun(3, "/dev/vg-one/lv-one-7", ["tgtadm"])
    assert str(cmd.explain(CommandError("sh", "tgt1", rc, stderr))) == message


@pytest.mark.parametrize("builder, argv", [
    (lambda: tgt.unbind_address(3, "10.0.0.0/24"),
     ["--op", "unbind", "--mode", "target", "--tid", "3", "--initiator-address", "10.0.0.0/24"]),
    (lambda: tgt.bind_initiator_name(3, "iqn.2000-01.x:n"),
     ["--op", "bind", "--mode", "target", "--tid", "3", "--initiator-name", "iqn.2000-01.x:n"]),
    (lambda: tgt.unbind_initiator_name(3, "iqn.2000-01.x:n"),
     ["--op", "unbind", "--mode", "target", "--tid", "3", "--initiator-name", "iqn.2000-01.x:n"]),
    (lambda: tgt.unbind_account(3, "u"), ["--op", "unbind", "--mode", "account", "--tid", "3", "--user", "u"]),
    (lambda: tgt.delete_account("u"), ["--op", "delete", "--mode", "account", "--user", "u"]),
    (lambda: tgt.show_accounts(), ["--op", "show", "--mode", "account"]),
])
def test_acl_and_account_argv(builder, argv):
    cmd = builder()
    assert list(cmd.argv) == ["tgtadm", "--lld", "iscsi", *argv]
    assert cmd.privileged and cmd.query == (argv[1] == "show")


def test_parse_accounts_of_captured_output():
    assert tgt.parse_accounts("Account list:\n    u1\n    joe\n") == {"u1", "joe"}
    assert tgt.parse_accounts("") == frozenset()


def test_users_of_leaves_the_outgoing_account_out():
    target = tgt.Target(1, IQN + "1", accounts=("in1", "out1 (outgoing)"))
    assert tgt.users_of(target) == ("in1",)


@pytest.mark.parametrize("size, shown", [
    (64 * 1024 * 1024, 67), (16 * 1024 * 1024, 17), (8 * 1024 * 1024, 8), (1999999, 2), (1500000, 1),
    (1000000, 1), (0, 0)])
def test_shown_mb_is_what_tgtd_1_0_85_printed(size, shown):
    """Measured: truncate -s SIZE, bound as a LUN, `Size: N MB` in tgtadm's show."""
    assert tgt.shown_mb(size) == shown


def test_a_whole_number_of_mib_is_read_back_exactly():
    for mib in [*range(0, 5000), 1024 * 1024, 4 * 1024 * 1024 + 7]:
        assert tgt.mib_of_shown_mb(tgt.shown_mb(mib * MIB)) == mib


def test_another_size_is_read_back_within_a_mib():
    for size in range(0, 50 * MIB, 99_991):
        assert abs(tgt.mib_of_shown_mb(tgt.shown_mb(size)) * MIB - size) < MIB
