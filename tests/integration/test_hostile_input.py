"""Hostile input, as OpenNebula gives it to the remote stubs, against the
real tgtd and, for the transfer actions, a real sshd.

The corpus runs in this process: one-iscsi gets the arguments the stub would
give it (read from the stub), most cases being refused before anything runs.
A case of each stub goes through the stub itself, to prove that the stubs
pass hostile arguments through intact.

Every case ends in a clear error (exit status, one-line ERROR MESSAGE) or in
correct handling (the odd name used as a name). Canary files prove that no
injected command ran: each hostile string tries to create one, relative (in
the working directory of whatever shell might run it) or absolute. Cases that
must fail leave no target, volume or config file behind.
"""
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from support.cli import Result
from support.driver import action_xml, encode, error_block, random_image, remote, remote_argv
from support.paths import BIN

CANARY = "one-iscsi-canary"
INJECT = [f"$(touch {CANARY})", f"`touch {CANARY}`", f"; touch {CANARY}", f"| touch {CANARY}",
          f"&& touch {CANARY}", f"\ntouch {CANARY}\n", f"' ; touch {CANARY} ; '", f'" ; touch {CANARY} ; "']
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"
MIB = 1024 * 1024


@dataclass
class Case:
    name: str
    action: str                     # datastore/<action> or tm/<action>
    image: dict = field(default_factory=dict)
    template: dict = field(default_factory=dict)
    datastore: dict = field(default_factory=dict)
    args: tuple = ()                # raw arguments instead of (action XML, image ID)
    image_id: str = "77"
    file_name: str = ""             # create this image file and put its path in PATH
    ok: bool = False                # correct handling expected, else a clear error
    message: str = ""               # the start of the expected error message


def image_name_cases():
    names = ["with space.img", "quote'single.img", 'quote"double.img', "semi;colon.img", "dollar$(x).img",
             "back`tick`.img", "new\nline.img", "-leading-dash.img", "nön-äscii-画像.img", "star*and?.img",
             "tab\there.img", "percent%s%n.img"]
    names += [f"inject{i}{text}.img".replace("/", "_") for i, text in enumerate(INJECT)]
    return [Case(f"cp of a file named {name!r}", "datastore/cp", file_name=name, ok=True) for name in names]


CASES = [
    *image_name_cases(),
    Case("image name field is only a name", "datastore/cp", image={"NAME": f"$(touch {CANARY})"},
         file_name="plain.img", ok=True),
    Case("PATH that is an option", "datastore/cp", image={"PATH": "-rf"},
         message="cannot read image file -rf"),
    Case("PATH with an injection", "datastore/cp", image={"PATH": f"/tmp/x$(touch {CANARY})"},
         message="cannot read image file /tmp/x$(touch"),
    Case("PATH is a directory", "datastore/cp", image={"PATH": "/tmp"},
         message="cannot read image file /tmp"),
    Case("PATH missing", "datastore/cp", image={}, message="missing IMAGE/PATH"),
    Case("PATH empty", "datastore/cp", image={"PATH": ""}, message="missing IMAGE/PATH"),
    Case("PATH URL with a bad scheme", "datastore/cp", image={"PATH": "ftp://x/$(touch y)"},
         message="cannot read image file ftp://x/$(touch y)"),
    Case("PATH in /etc/one", "datastore/cp", image={"PATH": "/etc/one/oned.conf"},
         message="Not allowed to copy image file /etc/one/oned.conf"),
    Case("PATH with .. into /var/lib/one", "datastore/cp", image={"PATH": "/tmp/../var/lib/one/x"},
         message="Not allowed to copy image file /tmp/../var/lib/one/x"),
    Case("PATH with // into /etc/one", "datastore/cp", image={"PATH": "//etc//one//x"},
         message="Not allowed to copy image file //etc//one//x"),
    Case("PATH with trailing slash", "datastore/cp", image={"PATH": "/var/lib/one/"},
         message="Not allowed to copy image file /var/lib/one/"),
    Case("PATH in the user's home", "datastore/cp", image={"PATH": str(Path.home() / "image.img")},
         message="Not allowed to copy image file"),
    *[Case(f"VG_NAME {vg!r}", "datastore/cp", datastore={"VG_NAME": vg}, file_name="plain.img",
           message="VG_NAME cannot be part of a target name") for vg in
      ["vg_one", "vg one", "vg;touch x", "-vg", "vg.one", "vg/../../etc", f"vg$(touch {CANARY})"]],
    Case("VG_NAME empty means the default", "datastore/cp", datastore={"VG_NAME": ""}, file_name="plain.img",
         ok=True),
    *[Case(f"HOST {host!r}", "datastore/cp", datastore={"HOST": host}, file_name="plain.img",
           message="HOST must be a host name") for host in
      ["-oProxyCommand=touch x", "host;reboot", "a b", "host\nx", f"h$(touch {CANARY})"]],
    Case("BASE_IQN with a space", "datastore/cp", datastore={"BASE_IQN": "iqn.2012-02.org x"},
         file_name="plain.img", message="IQN"),
    Case("BASE_IQN with a colon", "datastore/cp", datastore={"BASE_IQN": "iqn.2012-02.org:x"},
         file_name="plain.img", message="BASE_IQN must not contain ':'"),
    Case("image ID with an injection", "datastore/cp", file_name="plain.img", image_id=f"7;touch {CANARY}",
         message="image ID must be a non-negative integer"),
    Case("image ID negative", "datastore/cp", file_name="plain.img", image_id="-7",
         message="image ID must be a non-negative integer"),
    Case("XML external entity", "datastore/cp", args=(encode(
        '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><DS_DRIVER_ACTION_DATA><IMAGE>'
        "<PATH>&x;</PATH></IMAGE></DS_DRIVER_ACTION_DATA>"), "77"), message="refused XML"),
    Case("XML entity expansion bomb", "datastore/cp", args=(encode(
        '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><DS_DRIVER_ACTION_DATA><IMAGE><PATH>&c;</PATH>'
        "</IMAGE></DS_DRIVER_ACTION_DATA>"), "77"), message="refused XML"),
    Case("XML DTD with a parameter entity", "datastore/cp", args=(encode(
        '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x"> %p;]><DS_DRIVER_ACTION_DATA/>'), "77"),
         message="refused XML"),
    Case("malformed base64", "datastore/cp", args=("!!not base64!!", "77"), message="malformed base64"),
    Case("base64 of garbage", "datastore/cp", args=(encode("\x00\x01garbage"), "77"), message="malformed XML"),
    Case("empty action data", "datastore/cp", args=("", "77"), message="malformed XML"),
    Case("wrong root element", "datastore/cp", args=(encode("<IMAGE/>"), "77"),
         message="expected <DS_DRIVER_ACTION_DATA>"),
    Case("mkfs SIZE with an injection", "datastore/mkfs", image={"SIZE": f"8;touch {CANARY}", "FSTYPE": "raw"},
         message="IMAGE/SIZE must be a positive number of MB"),
    Case("mkfs SIZE negative", "datastore/mkfs", image={"SIZE": "-8", "FSTYPE": "raw"},
         message="IMAGE/SIZE must be a positive number of MB"),
    Case("mkfs FSTYPE with an option", "datastore/mkfs", image={"SIZE": "8", "FSTYPE": "-V"},
         message="unsupported FSTYPE '-V'"),
    Case("mkfs FSTYPE with an injection", "datastore/mkfs", image={"SIZE": "8", "FSTYPE": f"ext4;touch {CANARY}"},
         message="unsupported FSTYPE"),
    *[Case(f"rm SOURCE {source!r}", "datastore/rm", image={"SOURCE": source}, message=message) for source, message in [
        (f"{IQN.format(77)};touch {CANARY}", "IQN"),
        ("iqn.2012-02.org.opennebula:localhost.vg_one.lv-one-77", "IQN"),
        ("iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-78", "is not image 77"),
        ("iqn.2012-02.org.opennebula:localhost.vg-one.root", "is not image 77"),
        ("-iqn", "IQN"),
        ("", "missing IMAGE/SOURCE"),
    ]],
    *[Case(f"tm ln IQN {iqn!r}", "tm/ln", args=(iqn, "node1:/tmp/one-iscsi-hostile/0/1/disk.0"), message="IQN")
      for iqn in [f"{IQN.format(1)}$(touch {CANARY})", "iqn.2012-02.org.opennebula:h.v_g.lv", "-iqn"]],
    *[Case(f"tm {action} host:path {target!r}", f"tm/{action}", args=args, message=message)
      for action, target, args, message in [
          ("ln", "-oProxyCommand", (IQN.format(1), "-oProxyCommand=touch x:/tmp/d/disk.0"), "invalid host name"),
          ("ln", "relative path", (IQN.format(1), "node1:tmp/disk.0"), "expected HOST:/PATH"),
          ("delete", "no path", (f"node1;touch {CANARY}",), "expected HOST:/PATH"),
          ("mvds", "host with space", ("node 1:/tmp/x/disk.0", IQN.format(1)), "invalid host name"),
          ("mv", "injection in host", (f"$(touch {CANARY}):/a", "node1:/b"), "invalid host name"),
      ]],
]


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50


@pytest.fixture
def canaries(tmp_path):
    """Where an injected `touch` would leave its file; none may exist after."""
    places = [Path.cwd(), Path.home(), tmp_path, Path("/"), Path("/tmp")]
    yield lambda: [str(place / CANARY) for place in places if (place / CANARY).exists()]
    for place in places:
        if (place / CANARY).exists():
            (place / CANARY).unlink()


# one case of each stub in the corpus, through the stub: hostile arguments on its command line
STUB_CASES = [case for case in CASES if case.name in {
    f"cp of a file named {'inject0' + INJECT[0] + '.img'!r}",
    "image ID with an injection",
    "mkfs SIZE with an injection",
    f"rm SOURCE {IQN.format(77) + ';touch ' + CANARY!r}",
    f"tm ln IQN {IQN.format(1) + '$(touch ' + CANARY + ')'!r}",
    "tm delete host:path 'no path'",
    "tm mvds host:path 'host with space'",
    "tm mv host:path 'injection in host'",
}]

Run = Callable[..., Result]  # run(driver, action, *args): remotes/<driver>/iscsi/<action> ARGS


def test_every_stub_of_the_corpus_is_run_as_a_stub():
    assert len(STUB_CASES) == 8
    assert {case.action for case in STUB_CASES} == {case.action for case in CASES}


@pytest.fixture
def in_process(cli, monkeypatch) -> Run:
    """A remote stub's command run in this process: the arguments the stub
    gives one-iscsi, with the PATH that remote() gives the stub."""
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ.get('PATH', '')}")
    return lambda driver, action, *args: cli(*remote_argv(driver, action, *args))


@pytest.fixture
def through_stub(in_process) -> Run:
    """The remote stub itself. A refusal must be the one of the same
    arguments given in-process: they reach one-iscsi intact."""

    def run(driver: str, action: str, *args: str) -> Result:
        done = remote(driver, action, *args)
        stub = Result(done.returncode, done.stdout, done.stderr)
        if stub.rc != 0:
            same = in_process(driver, action, *args)
            assert (stub.rc, error_block(stub.err)) == (same.rc, error_block(same.err))
        return stub

    return run


def check_case(case: Case, run: Run, tgtd, tmp_path: Path, canaries) -> None:
    pool = tmp_path / "pool"
    datastore = {"BACKEND": "file", "POOL_DIR": str(pool), "HOST": "localhost", **case.datastore}
    image = dict(case.image)
    if case.file_name:
        image["PATH"] = str(random_image(tmp_path / case.file_name, MIB // 2))
    args = case.args or (action_xml(image, case.template, datastore), case.image_id)
    driver, action = case.action.split("/")
    done = run(driver, action, *args)
    if case.ok:
        assert done.rc == 0, done.err
        assert done.out == f"{IQN.format(case.image_id)} 1\n"
        rm = run("datastore", "rm", action_xml({"SOURCE": IQN.format(case.image_id)}, {}, datastore), case.image_id)
        assert rm.rc == 0, rm.err
    else:
        assert done.rc != 0
        assert error_block(done.err).startswith(case.message) or case.message in error_block(done.err), \
            error_block(done.err)
    assert canaries() == []
    assert tgtd.target_ids() == []
    assert not pool.exists() or not any(pool.rglob("lv-one-*"))
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    assert not conf_dir.exists() or not any(conf_dir.iterdir())


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(case, in_process, tgtd, tmp_path, canaries, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_case(case, in_process, tgtd, tmp_path, canaries)


@pytest.mark.parametrize("case", STUB_CASES, ids=[case.name for case in STUB_CASES])
def test_the_stubs_pass_hostile_input_through(case, through_stub, tgtd, tmp_path, canaries, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_case(case, through_stub, tgtd, tmp_path, canaries)


@pytest.mark.parametrize("text", INJECT + ["-rf", "a b", "nön-äscii", "--", "$HOME"],
                         ids=[shlex.quote(text) for text in INJECT + ["-rf", "a b", "nön-äscii", "--", "$HOME"]])
def test_odd_vm_paths_reach_the_host_as_they_are(text, in_process, sshd, tgtd, tmp_path, canaries, monkeypatch):
    """tm ln on a NO_ISCSI host over a real ssh: the disk link is made at
    exactly the path given, and nothing else runs there."""
    monkeypatch.setenv("ONE_ISCSI_SSH", sshd.ssh)
    monkeypatch.setenv("ONE_ISCSI_NO_ISCSI", "node1")
    monkeypatch.setenv("ONE_ISCSI_BACKEND", "file")
    monkeypatch.setenv("ONE_ISCSI_POOL_DIR", str(tmp_path / "pool"))
    vm_dir = tmp_path / "vms" / text.replace("/", "_").replace("\n", "_nl_") / "7"
    disk = vm_dir / "disk.0"
    done = in_process("tm", "ln", IQN.format(1), f"node1:{disk}")
    assert done.rc == 0, done.err
    assert os.readlink(disk) == str(tmp_path / "pool" / "vg-one" / "lv-one-1")
    assert in_process("tm", "delete", f"node1:{vm_dir}").rc == 0
    assert not vm_dir.exists()
    assert canaries() == []
