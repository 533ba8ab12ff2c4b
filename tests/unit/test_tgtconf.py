"""tgtconf: the target files tgt-admin runs through a shell at tgt's start.
render() writes only values that pass the rules of values.py; parse() reads
back only what render() writes, with one-line errors naming the file."""
import random

import pytest

from oneiscsi import tgtconf
from oneiscsi.errors import InvalidInput
from oneiscsi.tgtconf import NO_ADDRESS, TargetSpec

IQN = "iqn.2012-02.org.opennebula:tgt1.vg-one.lv-one-7"
STORE = "/dev/vg-one/lv-one-7"
PASSWORD = "secret-pass-12"
ORIGIN = f"/etc/tgt/conf.d/one-iscsi/{IQN}.conf"


def test_render_writes_every_field_in_tgt_format():
    spec = TargetSpec(IQN, (STORE,), ("10.0.0.0/24", "fd00::5", "iqn.1993-08.org.debian:01:abc"), "one", PASSWORD)
    assert tgtconf.render(spec) == (
        f"{tgtconf.HEADER}<target {IQN}>\n"
        f"    backing-store {STORE}\n"
        "    initiator-address 10.0.0.0/24\n"
        "    initiator-address fd00::5\n"
        "    initiator-name iqn.1993-08.org.debian:01:abc\n"
        f"    incominguser one {PASSWORD}\n"
        "</target>\n")


def test_luns_other_than_one_lun_1_are_written_with_their_numbers():
    """tgt-admin numbers plain backing-store lines in the order of their
    paths and skips missing ones (measured with --pretend): a LUN would
    change its number at tgt's start."""
    spec = TargetSpec(IQN, ("/srv/p/z.img", STORE), lun_numbers=(1, 3))
    assert tgtconf.render(spec) == (
        f"{tgtconf.HEADER}<target {IQN}>\n"
        "    <backing-store /srv/p/z.img>\n        lun 1\n    </backing-store>\n"
        f"    <backing-store {STORE}>\n        lun 3\n    </backing-store>\n"
        "    initiator-address ALL\n"
        "</target>\n")
    assert tgtconf.parse(tgtconf.render(spec), ORIGIN) == spec


def test_the_tid_a_target_was_made_with_is_recorded_for_tgt_admin():
    """tgt-admin gives a target with controller_tid that TID at tgt's start (not the next one)."""
    spec = TargetSpec(IQN, (STORE,), tid=12)
    assert tgtconf.render(spec) == (f"{tgtconf.HEADER}<target {IQN}>\n    controller_tid 12\n"
                                    f"    backing-store {STORE}\n    initiator-address ALL\n</target>\n")
    assert spec.with_luns([(1, "/x")]).tid == 12 and spec.with_tid(3).tid == 3
    assert tgtconf.parse(tgtconf.render(spec.with_tid(0)), ORIGIN).tid == 0  # not recorded (earlier versions)


def test_lun_numbers_default_to_the_order_of_the_backing_stores():
    spec = TargetSpec(IQN, (STORE, "/srv/p/b.img"))
    assert spec.luns == ((1, STORE), (2, "/srv/p/b.img"))
    assert spec == TargetSpec(IQN, (STORE, "/srv/p/b.img"), lun_numbers=(1, 2))
    assert spec.with_luns([(5, "/x"), (2, "/y")]).luns == ((2, "/y"), (5, "/x"))


def test_a_file_of_an_earlier_version_with_backing_store_lines_reads_as_luns_in_order():
    text = f"<target {IQN}>\n    backing-store {STORE}\n    backing-store /srv/p/b.img\n</target>\n"
    assert tgtconf.parse(text, ORIGIN).luns == ((1, STORE), (2, "/srv/p/b.img"))


def test_a_target_of_no_lun_and_no_initiator_is_closed_in_the_file_too():
    """What `target new` saves: tgt-admin would bind ALL to a target without initiator-address."""
    spec = TargetSpec(IQN, (), ())
    text = tgtconf.render(spec)
    assert text == f"{tgtconf.HEADER}<target {IQN}>\n    initiator-address {NO_ADDRESS}\n</target>\n"
    assert tgtconf.parse(text, ORIGIN) == spec


def test_a_target_open_to_initiator_names_only_gets_an_address_no_initiator_has():
    """tgt-admin binds ALL to a target without initiator-address, which would
    let every initiator in after tgt's start."""
    text = tgtconf.render(TargetSpec(IQN, (STORE,), ("iqn.2000-01.org.example:node1",)))
    assert f"    initiator-address {NO_ADDRESS}\n    initiator-name iqn.2000-01.org.example:node1\n" in text
    assert NO_ADDRESS not in tgtconf.render(TargetSpec(IQN, (STORE,), ("10.0.0.5", "iqn.2000-01.org.example:n1")))


@pytest.mark.parametrize("spec", [
    TargetSpec(IQN, (STORE,)),
    TargetSpec(IQN, (STORE, "/srv/p/b.img"), ("ALL",)),
    TargetSpec(IQN, (STORE,), ("127.0.0.1", "192.168.7.0/24", "::1", "fe80::/10")),
    TargetSpec(IQN, (STORE,), ("iqn.2000-01.org.example:node1", "eui.0123456789ABCDEF")),
    TargetSpec(IQN, (STORE,), ("10.0.0.5", "iqn.2000-01.org.example:node1"), "one", PASSWORD),
    TargetSpec(IQN, (STORE,), ()),
    TargetSpec(IQN, ()),
    TargetSpec(IQN, ("/srv/p/b.img", STORE), ("ALL",), lun_numbers=(2, 7)),
    TargetSpec(IQN, (STORE,), chap_user="a_b.c@d:e-f", chap_password="a~^b%c,d/e=f+g:"),
    TargetSpec(IQN, (STORE,), tid=7),
    TargetSpec(IQN, (), (), tid=2**31 - 1),
])
def test_parse_reads_back_what_render_writes(spec):
    assert tgtconf.parse(tgtconf.render(spec), ORIGIN) == spec


@pytest.mark.parametrize("change, field", [
    ({"iqn": "iqn.2012-02.org.opennebula:x;touch${IFS}/tmp/x"}, "IQN"),
    ({"iqn": ""}, "IQN"),
    ({"backing_stores": ("/srv/p$(touch${IFS}/tmp/z)/vg-one/lv-one-7",)}, "backing store"),
    ({"backing_stores": ("dev/x",)}, "backing store"),
    ({"backing_stores": (STORE, "/dev/x y")}, "backing store"),
    ({"backing_stores": ("/srv/`touch${IFS}/tmp/z`",)}, "backing store"),
    ({"initiators": ("127.0.0.1;touch${IFS}/tmp/x",)}, "initiator"),
    ({"initiators": ("</target>",)}, "initiator"),
    ({"initiators": ("10.0.0.1\n    incominguser evil evil-password1",)}, "initiator"),
    ({"initiators": ("10.0.0.1|touch${IFS}/tmp/x",)}, "initiator"),
    ({"initiators": ("ALL", "iqn.2000-01.x:a&&touch")}, "initiator"),
    ({"chap_user": "one`touch${IFS}/tmp/y`", "chap_password": PASSWORD}, "CHAP user"),
    ({"chap_user": "one\nincominguser evil", "chap_password": PASSWORD}, "CHAP user"),
])
def test_render_refuses_a_value_the_rules_refuse_and_names_the_field(change, field):
    spec = TargetSpec(**{"iqn": IQN, "backing_stores": (STORE,), **change})
    with pytest.raises(InvalidInput, match=f"^target .*: {field} .* (must|contains|is not)") as refused:
        tgtconf.render(spec)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("password", [
    "pass$(touch${IFS}/tmp/y)", "secret-pass-12\n    incominguser evil evil-pass-123", "pass;word-1234",
    "pass#word-12345", "short", "-starts-with-dash", "secret-pass-12\\"])
def test_render_refuses_a_bad_chap_password_without_showing_it(password):
    with pytest.raises(InvalidInput, match=f"^target '{IQN}': CHAP password must be 12 to 16") as refused:
        tgtconf.render(TargetSpec(IQN, (STORE,), ("ALL",), "one", password))
    assert password not in str(refused.value)


LUN_NUMBERS = "LUN numbers must be integers from 1 to 16383, one per backing store"


@pytest.mark.parametrize("spec, problem", [
    (TargetSpec(IQN, (STORE, STORE)), f"backing store {STORE} given twice"),
    (TargetSpec(IQN, (STORE, "/x"), lun_numbers=(2, 2)), "LUN 2 given twice"),
    (TargetSpec(IQN, (STORE,), lun_numbers=(0,)), LUN_NUMBERS),
    (TargetSpec(IQN, (STORE,), lun_numbers=(1, 2)), LUN_NUMBERS),
    (TargetSpec(IQN, (STORE,), ("ALL",), "one", ""), "CHAP user and password go together"),
    (TargetSpec(IQN, (STORE,), ("ALL",), "", PASSWORD), "CHAP user and password go together"),
    (TargetSpec(IQN, (STORE,), tid=-1), r"TID must be an integer from 1 to 2147483647 \(0: not recorded\)"),
    (TargetSpec(IQN, (STORE,), tid=2**31), r"TID must be an integer from 1 to 2147483647 \(0: not recorded\)"),
    (TargetSpec(IQN, (STORE,), tid="7;id"), r"TID must be an integer from 1 to 2147483647 \(0: not recorded\)"),
])
def test_render_refuses_an_incomplete_target(spec, problem):
    with pytest.raises(InvalidInput, match=f"^target '{IQN}': {problem}$"):
        tgtconf.render(spec)


GOOD = f"<target {IQN}>\n    backing-store {STORE}\n</target>\n"


@pytest.mark.parametrize("text, problem", [
    ("", "has no <target IQN> section"),
    ("# only a comment\n", "has no <target IQN> section"),
    (f"<target {IQN}>\n    backing-store {STORE}\n", f": <target {IQN}> has no </target>"),
    (GOOD + GOOD, ": line 4: a second <target> section"),
    (f"<target {IQN}>\n<target {IQN}>\n", ": line 2: a second <target> section"),
    (f"<target {IQN} x>\n", ": line 1: expected <target IQN>"),
    (f"backing-store {STORE}\n" + GOOD, ": line 1: 'backing-store' outside <target>"),
    (GOOD + "include /etc/passwd\n", ": line 4: 'include' outside <target>"),
    ("</target>\n", ": line 1: '</target>' outside <target>"),
    (GOOD.replace("</target>", "    write-cache off\n</target>"), ": line 3: unknown directive 'write-cache'"),
    (GOOD.replace("</target>", "    bs-type rbd\n</target>"), ": line 3: unknown directive 'bs-type'"),
    (GOOD.replace("</target>", "    incominguser one\n</target>"), ": line 3: incominguser takes 2 value"),
    (GOOD.replace("</target>", f"    incominguser one {PASSWORD} x\n</target>"),
     ": line 3: incominguser takes 2 value"),
    (GOOD.replace(STORE, f"{STORE} {STORE}"), ": line 2: backing-store takes 1 value"),
    (GOOD.replace("</target>", f"    incominguser one {PASSWORD}\n    incominguser evil evil-pass-123\n</target>"),
     ": line 4: a second incominguser"),
    (GOOD.replace("</target>", "    initiator-address 127.0.0.1;touch${IFS}/tmp/x\n</target>"),
     ": initiator '127.0.0.1;touch${IFS}/tmp/x' must be ALL"),
    (GOOD.replace("</target>", "    initiator-address </target>\n</target>"), ": initiator '</target>' must be"),
    (GOOD.replace(STORE, "/srv/p$(touch${IFS}/tmp/z)"), ": backing store '/srv/p$(touch${IFS}/tmp/z)' must"),
    (GOOD.replace(STORE, "relative/x"), ": backing store 'relative/x' must be an absolute path"),
    (GOOD.replace("</target>", "    incominguser one`id` secret-pass-12\n</target>"), ": CHAP user 'one`id`' must"),
    (GOOD.replace("</target>", "    incominguser one pass$(touch${IFS}/tmp/y)\n</target>"),
     ": CHAP password must be 12 to 16"),
    (GOOD.replace(IQN, "iqn.2012-02.org.opennebula:bad_name"), ": IQN 'iqn.2012-02.org.opennebula:bad_name'"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n    lun 2\n    </backing-store>\n"
                                             "    backing-store /x"), ": both backing-store lines and <backing-store>"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n</backing-store>"),
     ": line 3: expected `lun N` and then </backing-store>"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n    lun 2\n    lun 3\n</backing-store>"),
     ": line 4: expected `lun N` and then </backing-store>"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n    lun 2;id\n</backing-store>"),
     ": line 3: expected `lun N`"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n    lun 0\n</backing-store>"),
     ": LUN numbers must be integers from 1"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE}>\n    lun 2"), ": line 4: expected `lun N`"),
    (f"<target {IQN}>\n    <backing-store {STORE}>\n    lun 2\n", f": <target {IQN}> has no </target>"),
    (GOOD.replace(f"backing-store {STORE}", f"<backing-store {STORE} x>"), ": line 2: expected <backing-store PATH>"),
    (GOOD.replace("</target>", "    controller_tid 0\n</target>"),
     ": line 3: controller_tid must be an integer from 1"),
    (GOOD.replace("</target>", "    controller_tid 2147483648\n</target>"), ": line 3: controller_tid must be"),
    (GOOD.replace("</target>", "    controller_tid 7;id\n</target>"), ": line 3: controller_tid must be"),
    (GOOD.replace("</target>", "    controller_tid ٣\n</target>"), ": line 3: controller_tid must be"),
    (GOOD.replace("</target>", "    controller_tid 7 8\n</target>"), ": line 3: controller_tid takes 1 value"),
    (GOOD.replace("</target>", "    controller_tid 7\n    controller_tid 7\n</target>"),
     ": line 4: a second controller_tid"),
])
def test_parse_refuses_anything_render_does_not_write_in_one_line_naming_the_file(text, problem):
    with pytest.raises(InvalidInput) as refused:
        tgtconf.parse(text, ORIGIN)
    message = str(refused.value)
    assert message.startswith(ORIGIN) and problem in message and "\n" not in message
    assert "pass$(touch" not in message


def test_parse_keeps_comments_blank_lines_and_indentation_out():
    text = f"# header\n\n<target {IQN}>\n# note\n\tbacking-store {STORE}\n   \n</target>\n# end\n"
    assert tgtconf.parse(text, ORIGIN) == TargetSpec(IQN, (STORE,))


WORDS = ["<target", "</target>", *tgtconf.DIRECTIVES, "<backing-store", "</backing-store>", "lun", "include",
         "write-cache", "#"]
VALUES = [STORE, "/srv/p/b.img", f"{STORE}>", "2", "0", "one", PASSWORD, "ALL", "127.0.0.1", "fe80::/10", NO_ADDRESS,
          "iqn.2000-01.org.example:n1", f"{IQN}>", "</target>", ";", "$(id)", "`id`", "|", "&&", "#x", "\\",
          "<<EOF", "/tmp/x;y", "relative", "-o", "pass$(id)12345"]


def test_parse_of_a_jumbled_file_returns_a_spec_that_passes_the_rules_or_one_invalid_input():
    chance, outcomes = random.Random(20240601), {"read": 0, "refused": 0}
    for _ in range(3000):
        lines = GOOD.splitlines()
        for _ in range(chance.randint(1, 3)):
            line = " ".join([chance.choice(WORDS), *chance.sample(VALUES, chance.randint(0, 3))])
            lines.insert(chance.randint(0, len(lines)), line)
        try:
            spec = tgtconf.parse("\n".join(lines), ORIGIN)
        except InvalidInput as err:
            assert str(err).startswith(ORIGIN) and "\n" not in str(err)
            outcomes["refused"] += 1
            continue
        assert tgtconf.check(spec, ORIGIN) == spec
        assert tgtconf.parse(tgtconf.render(spec), ORIGIN) == spec
        outcomes["read"] += 1
    assert min(outcomes.values()) > 50, outcomes


def test_file_names_stay_inside_conf_dir_and_out_of_the_temporary_names():
    assert tgtconf.path("/etc/tgt/conf.d/one-iscsi", IQN) == ORIGIN
    assert tgtconf.include_path("/etc/tgt/conf.d/one-iscsi/") == "/etc/tgt/conf.d/one-iscsi.conf"
    temporary = tgtconf.write(ORIGIN, "x")[1].argv[1]
    assert temporary == f"of=/etc/tgt/conf.d/one-iscsi/.{IQN}.conf.tmp"  # a dot file: no *.conf glob takes it


def test_saved_files_are_listed_with_their_sizes_and_read_by_one_cat():
    listing = tgtconf.list_files("/etc/tgt/conf.d/one-iscsi")
    assert list(listing.argv) == ["find", "/etc/tgt/conf.d/one-iscsi", "-maxdepth", "1", "-name", "*.conf",
                                  "-printf", "%s %f\\n"]
    assert tgtconf.parse_files(f"12 b.conf\n7 {IQN}.conf\nnot a line\n") == [("b.conf", 12), (f"{IQN}.conf", 7)]
    assert list(tgtconf.read("/a", "/b").argv) == ["cat", "--", "/a", "/b"]


@pytest.mark.parametrize("text, sizes, texts", [
    ("abcde", [2, 0, 3], ["ab", "", "cde"]),
    ("é\nx", [3, 1], ["é\n", "x"]),  # sizes in bytes
    ("abcde", [2, 2], None),  # a file changed meanwhile
    ("ab\ufffd", [2, 1], None),  # not UTF-8: decoded with a replacement
])
def test_split_cuts_what_one_cat_read_into_its_files(text, sizes, texts):
    assert tgtconf.split(text, sizes) == texts
