"""tgtstart: reading tgt's configuration as tgt-admin does, and the TIDs its
start gives. tests/integration/test_tgt_startup.py holds the simulation
against the real tgt-admin."""
import pytest

from oneiscsi import tgtstart
from oneiscsi.tgtstart import Declared

OWN = "/etc/tgt/conf.d/one-iscsi"
ONE = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-{}"


def own(n: int, tid) -> Declared:
    return Declared(ONE.format(n), tid, f"{OWN}/{ONE.format(n)}.conf")


def other(name: str, tid=None) -> Declared:
    return Declared(name, tid, "/etc/tgt/targets.conf")


def test_declared_reads_target_blocks_in_config_generals_forms():
    text = """# a comment
default-driver iscsi
<target iqn.2001-04.com.example:a>
    controller_tid 5  # a comment after it
    <backing-store /dev/sdb>
        controller_tid 9
    </backing-store>
</target>
<target "iqn.2001-04.com.example:b">
    controller_tid = 6
</target>
<target iqn.2001-04.com.example:c>
    # controller_tid 7
    controller_tid seven
</target>
<target iqn.2001-04.com.example:d>
    controller_tid 0
</target>
<target iqn.2001-04.com.example:e>
\tcontroller_tid\t8
</target>
<TARGET iqn.2001-04.com.example:f>
    controller_tid 9
</TARGET>
"""
    assert tgtstart.declared(text, "f") == [Declared("iqn.2001-04.com.example:a", 5, "f"),
                                            Declared("iqn.2001-04.com.example:b", 6, "f"),
                                            Declared("iqn.2001-04.com.example:c", None, "f", "seven"),
                                            Declared("iqn.2001-04.com.example:d", None, "f", "0"),
                                            Declared("iqn.2001-04.com.example:e", 8, "f")]  # <TARGET>: not tgt's


def test_includes_in_apaches_forms():
    text = "include /etc/tgt/conf.d/*.conf\n# include /x\nInclude /etc/tgt/more/\nIncludeOptional /etc/tgt/one.conf\n"
    assert tgtstart.includes(text) == [("/etc/tgt/conf.d/*.conf", False), ("/etc/tgt/more/", False),
                                       ("/etc/tgt/one.conf", True)]
    assert tgtstart.includes('include "/etc/tgt/a b.conf"\ninclude_x /y\n<<include /etc/tgt/x.conf>>\n') == [
        ("/etc/tgt/a b.conf", False)]  # <<include>> is not Apache's: tgt-admin fails on it


@pytest.mark.parametrize("pattern, found", [
    ("/d/*.conf", ["/d/a.conf", "/d/b.conf"]),   # no dot file: a glob's * skips it
    ("/d/.*.conf", ["/d/.tmp.conf"]),
    ("/d", ["/d/.tmp.conf", "/d/a.conf", "/d/b.conf", "/d/c.txt"]),  # a directory: all its files
    ("/d/a.conf", ["/d/a.conf"]),
])
def test_included_files(pattern, found):
    listed = {"/d/a.conf": "/d/a.conf\0", "/d/.*.conf": "/d/.tmp.conf\0"}.get(
        pattern, "/d/b.conf\0/d/a.conf\0/d/.tmp.conf\0/d/c.txt\0")
    assert tgtstart.included(listed, pattern) == found


def test_find_included_looks_in_the_directory_of_a_glob_and_at_anything_else_itself():
    assert tgtstart.find_included("/d/*.conf").argv[:3] == ("find", "-L", "/d")
    assert tgtstart.find_included("/d/x.conf").argv[:3] == ("find", "-L", "/d/x.conf")
    assert not tgtstart.find_included("/d/*.conf").privileged


@pytest.mark.parametrize("pattern, followed", [
    ("/d/*.conf", True), ("/d/x", True), ("/d*/x.conf", False), ("/d/{a,b}.conf", False)])
def test_globs_doctor_follows(pattern, followed):
    assert tgtstart.followed(pattern) is followed


def test_start_tids_follow_tgt_admin_in_name_order():
    targets = [other("iqn.2099-01.org.example:z"), own(2, 7), own(1, 8), other("iqn.2000-01.org.example:a")]
    assert tgtstart.start_tids(targets) == {"iqn.2000-01.org.example:a": 1, ONE.format(1): 8, ONE.format(2): 7,
                                            "iqn.2099-01.org.example:z": 8}


def test_a_name_declared_twice_is_one_target():
    assert tgtstart.start_tids([other("iqn.2000-01.org.example:a"), other("iqn.2000-01.org.example:a", 4)]) == {
        "iqn.2000-01.org.example:a": 4}


def test_every_target_with_a_tid_of_its_own_below_base_tid_is_no_problem():
    assert tgtstart.problems([own(1, 100), own(2, 101), other("iqn.2000-01.org.example:a", 3)], OWN, 100) == []


def test_no_target_with_a_tid_is_no_problem():
    assert tgtstart.problems([other("iqn.2000-01.org.example:a"), other("iqn.2000-01.org.example:b")], OWN, 1) == []


def test_a_target_without_tid_taking_a_recorded_one_is_named_with_the_clash():
    found = tgtstart.problems([own(1, 8), own(2, 7), other("iqn.2099-01.org.example:z")], OWN, 1)
    assert found == [
        f"at tgt's start iqn.2099-01.org.example:z (/etc/tgt/targets.conf) takes TID 8, which {ONE.format(1)} "
        f"({OWN}/{ONE.format(1)}.conf) records: of the two, the one made second gets its LUNs, ACL and CHAP bound "
        "to the other",
        "iqn.2099-01.org.example:z (/etc/tgt/targets.conf) records no TID: tgt's start numbers such targets after "
        "the one before them and may give one a TID another records; give each a controller_tid of its own and set "
        "BASE_TID above their TIDs"]


def test_own_files_without_tid_are_told_to_restore():
    found = tgtstart.problems([own(1, None), own(2, 9)], OWN, 5)
    assert found == [f"{ONE.format(1)} ({OWN}/{ONE.format(1)}.conf) in {OWN} records no TID (an earlier version's "
                     "files): tgt's start numbers such targets after the one before them and may give one a TID "
                     "another records; `one-iscsi target restore` records their TIDs"]


def test_a_tid_recorded_twice_and_a_tid_in_one_iscsis_range_are_problems():
    found = tgtstart.problems([own(1, 12), own(2, 12), other("iqn.2000-01.org.example:a", 40)], OWN, 10)
    assert found[0].startswith(f"TID 12 is recorded by {ONE.format(1)} ({OWN}/{ONE.format(1)}.conf), "
                               f"{ONE.format(2)} ({OWN}/{ONE.format(2)}.conf): tgt's start makes only the first")
    assert found[1] == ("iqn.2000-01.org.example:a (/etc/tgt/targets.conf) records TIDs from BASE_TID 10 on, which "
                        "one-iscsi gives its own targets (tgtd refuses only a TID it has): move them below 10")
    assert len(found) == 2


def test_a_controller_tid_that_is_no_tid_is_named_once():
    written = "3;touch${IFS}/tmp/canary"
    found = tgtstart.problems([Declared("iqn.2000-01.org.example:a", None, "/etc/tgt/targets.conf", written),
                               own(1, 8)], OWN, 5)
    assert found == [f"iqn.2000-01.org.example:a (/etc/tgt/targets.conf) has controller_tid {written!r}, which is no "
                     "TID: tgt-admin hands it to sh as it is; give it a number"]


def test_long_lists_are_cut():
    found = tgtstart.problems([own(n, None) for n in range(1, 6)] + [own(9, 9)], OWN, 1)
    assert " and 2 more in " in found[0]
