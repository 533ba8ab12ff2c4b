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
must fail leave no target, volume or config file behind, and say so in less
than 1000 characters of stderr however long their input. A CHAP password of
the datastore is never shown; a redirect off http(s) is never followed.

The families: odd image file names; datastore template values, refused when
the configuration is built, and odd ones that work; transfer actions refused
before any host is contacted (paths leaving themselves, delete outside a VM
directory, huge paths, IQNs whose host is no portal, hosts ssh would misread);
rm of another datastore's SOURCE; image PATHs that are no plain file or lead
into restricted directories; malformed action data.

Paths and messages may name the test's own folder as TMP ("@TMP@"): it is
put in when the case runs.
"""
import http.server
import os
import shlex
import socket
import threading
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
TMP = "@TMP@"  # the test's tmp_path, in a case's values and message
VM_DIR = "/var/lib/one/datastores/0/7"
DISK = f"{VM_DIR}/disk.0"
FROM_TEMPLATE = "(from the datastore template)"


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
    file_kind: str = ""             # make this odd kind of file (FILE_KINDS) and put its path in PATH
    redirect_to: str = ""           # PATH is an http URL redirecting there ("{trap}": a port that counts visits)
    ok: bool = False                # correct handling expected, else a clear error
    message: str = ""               # the start of the expected error message


def image_name_cases():
    names = ["with space.img", "quote'single.img", 'quote"double.img', "semi;colon.img", "dollar$(x).img",
             "back`tick`.img", "new\nline.img", "-leading-dash.img", "nön-äscii-画像.img", "star*and?.img",
             "tab\there.img", "percent%s%n.img"]
    names += [f"inject{i}{text}.img".replace("/", "_") for i, text in enumerate(INJECT)]
    return [Case(f"cp of a file named {name!r}", "datastore/cp", file_name=name, ok=True) for name in names]


# Datastore template values, refused when the configuration is built: before
# anything runs. The cp names a plain image, so the refusal is of the value.
HOSTILE_VALUES = [*INJECT, "</target>", "<target x>", "#comment", "\n</target>\n<target evil>\n"]
CHAP = {"CHAP_USER": "oneadmin", "CHAP_PASSWORD": "s3cret-Passw0rd"}  # good ones, 15 characters
RULES = {
    "INITIATORS": "must be ALL, addresses, networks (a.b.c.d/n) or initiator names (iqn., eui., naa.)",
    "CHAP_USER": "must be up to 255 letters, digits and _ . @ : - (not starting with -)",
    "CHAP_PASSWORD": "must be 12 to 16 letters, digits and _ . @ : + = % , / ^ ~ - (not starting with - or ~)",
    "absolute": "must be an absolute path",
    "path chars": "must hold only letters, digits and . _ + - / (no spaces, quotes or shell syntax)",
    "normalised": "must be a normalised path (no //, . or ..)",
    "octal": "must be an octal number from 0 to 777",
    "others write": "must deny others write access (e.g. 077, 027, 022)",
    "tid": "must be an integer from 1 to 2147483647",
    "VG_NAME": "cannot be part of a target name (letters, digits and '-' only, not starting with '-')",
    "HOST": "must be a host name (letters, digits, '.' and '-' only)",
    "iqn form": "is not of the form iqn.YYYY-MM.reverse.domain[:name]",
    "iqn length": "is longer than 223 characters",
}


def refused(key: str, rule: str, value: str) -> str:
    """The message of a template value refused by a rule of RULES (the key's
    own rule unless named); the value is shown as OpenNebula's XML gives it,
    stripped."""
    return f"{key} {RULES[rule]}, got {value.strip()!r} {FROM_TEMPLATE}"


def template_value_cases(key: str, values: list, rule: str = "", others=None):
    return [Case(f"{key} {value!r}", "datastore/cp", datastore={**(others or {}), key: value}, file_name="plain.img",
                 message=refused(key, rule or key, value)) for value in values]


def chap_password_cases(passwords: list):
    """The password is never shown (check_case looks for it in the output)."""
    return [Case(f"CHAP_PASSWORD {password!r}", "datastore/cp", datastore={**CHAP, "CHAP_PASSWORD": password},
                 file_name="plain.img", message=f"CHAP_PASSWORD {RULES['CHAP_PASSWORD']} {FROM_TEMPLATE}")
            for password in passwords]


def pool_dir_cases():
    chars = [f"/srv/one-iscsi{text}" for text in HOSTILE_VALUES] + [
        "/srv/one iscsi", "/srv/'pool'", '/srv/"pool"', f"/srv/p$(touch${{IFS}}/tmp/{CANARY})",
        f"/srv/p`touch {CANARY}`", f"/srv/p;touch {CANARY}", "/srv/pool\nincominguser evil secretsecret",
        "/srv/p*", "/srv/~pool", "/srv/pool\\x"]
    return [*template_value_cases("POOL_DIR", ["pool", "./pool", "~/pool", "$HOME/pool", "#comment", "-rf",
                                               f"$(touch {CANARY})"], "absolute"),
            *template_value_cases("POOL_DIR", chars, "path chars"),
            *template_value_cases("POOL_DIR", ["/srv/../etc", "/srv/pool/..", "/srv//pool", "//srv", "/srv/./pool",
                                               "/."], "normalised")]


TEMPLATE_CASES = [
    *template_value_cases("INITIATORS", [*HOSTILE_VALUES, f"127.0.0.1;touch${{IFS}}/tmp/{CANARY}",
                                         "127.0.0.1/33", "localhost", "ALL,127.0.0.1", "iqn.bad", "eui.0123",
                                         "naa.xyz0123456789abcd", "10.0.0.1 -oProxyCommand"]),
    *template_value_cases("CHAP_USER", [*HOSTILE_VALUES, "-user", "user name", "user/x", "user$"],
                          others=CHAP),
    Case("CHAP_USER of 256 characters", "datastore/cp", datastore={**CHAP, "CHAP_USER": "x" * 256},
         file_name="plain.img", message=f"CHAP_USER {RULES['CHAP_USER']}, got 'xxxxxxxx"),
    *chap_password_cases([*HOSTILE_VALUES, f"pass$(touch${{IFS}}/tmp/{CANARY})", "elevenchars", "a" * 17,
                          "-startswithdash", "with space in it", "quote'password", "secretsecret\nincominguser x"]),
    Case("CHAP_PASSWORD without CHAP_USER", "datastore/cp", datastore={"CHAP_PASSWORD": "s3cret-Passw0rd"},
         file_name="plain.img", message="CHAP_USER and CHAP_PASSWORD go together: set both or neither"),
    Case("CHAP_USER without CHAP_PASSWORD", "datastore/cp", datastore={"CHAP_USER": "oneadmin"},
         file_name="plain.img", message="CHAP_USER and CHAP_PASSWORD go together: set both or neither"),
    *pool_dir_cases(),
    *template_value_cases("UMASK", ["800", "077;x", "-1", "0x1f", "7777", f"$(touch {CANARY})"], "octal"),
    *template_value_cases("UMASK", ["000", "0", "075", "020"], "others write"),
    *template_value_cases("VG_NAME", ["vg:one", "</target>", "vg\none", "vg,one", "*", "vg-one.lv-one-1", "vg@x",
                                      "-", "画像"]),
    *template_value_cases("HOST", ["host:3260", "user@host", "[::1]", "..", "a..b", "-", "host/x", "</target>",
                                   "host_x", "host.", f"`touch {CANARY}`", "#comment"]),
    *template_value_cases("BASE_IQN", ["iqn.2012-13.org.x", "iqn.12-02.org.x", "eui.0123456789abcdef",
                                       "IQN.2012-02.org.x", "iqn.2012-02.-org", "iqn.2012-02"], "iqn form"),
    *[Case(f"BASE_IQN {value!r}", "datastore/cp", datastore={"BASE_IQN": value}, file_name="plain.img",
           message=f"BASE_IQN contains characters tgtd refuses: {bad!r}, got {value!r} {FROM_TEMPLATE}")
      for value, bad in [(f"iqn.2012-02.org.x;touch {CANARY}", " ;"), (f"iqn.2012-02.org.x$(touch {CANARY})", " $()"),
                         ("iqn.2012-02.org.x/../y", "/"), ("iqn.2012-02.org.x</target>", "/<>")]],
    Case("BASE_IQN of 250 characters", "datastore/cp", datastore={"BASE_IQN": "iqn.2012-02.org." + "x" * 234},
         file_name="plain.img", message=f"BASE_IQN {RULES['iqn length']}, got 'iqn.2012-02.org.xxxx"),
    *template_value_cases("BASE_TID", ["0", "-1", "2147483648", "99999999999999999999", "1;x", "1.5", "١"],
                          "tid"),
    Case("mkfs with a hostile template value", "datastore/mkfs", image={"SIZE": "8", "FSTYPE": "raw"},
         datastore={"INITIATORS": f"$(touch {CANARY})"}, message=refused("INITIATORS", "INITIATORS",
                                                                        f"$(touch {CANARY})")),
    Case("rm with a hostile template value", "datastore/rm", image={"SOURCE": IQN.format(77)},
         datastore={"POOL_DIR": f"/srv/p;touch {CANARY}"},
         message=refused("POOL_DIR", "path chars", f"/srv/p;touch {CANARY}")),
]

# Odd template values that are good: the image is made and removed again.
GOOD_TEMPLATE_CASES = [
    Case("INITIATORS of IPv6, addresses and an initiator name", "datastore/cp", file_name="plain.img", ok=True,
         datastore={"INITIATORS": "fd00::/8 ::1 10.0.0.1 192.168.0.0/16 iqn.1993-08.org.debian:01:abcdef"}),
    Case("INITIATORS of initiator names only", "datastore/cp", file_name="plain.img", ok=True,
         datastore={"INITIATORS": "iqn.1993-08.org.debian:01:abcdef eui.0123456789ABCDEF"}),
    Case("CHAP password of exactly 12 characters", "datastore/cp", file_name="plain.img", ok=True,
         datastore={"CHAP_USER": "one.admin@x:y_z-1", "CHAP_PASSWORD": "Ab1_.@:+=%,/"}),
    Case("CHAP password of exactly 16 characters", "datastore/cp", file_name="plain.img", ok=True,
         datastore={"CHAP_USER": "u", "CHAP_PASSWORD": "^~Zz09-_.@:+=%,/"}),
    Case("POOL_DIR with a trailing slash", "datastore/cp", file_name="plain.img", ok=True,
         datastore={"POOL_DIR": f"{TMP}/pool/"}),
    Case("UMASK 0027", "datastore/cp", file_name="plain.img", ok=True, datastore={"UMASK": "0027"}),
]


# Transfer actions, refused before any host is contacted (no sshd here: a
# case that got as far as ssh to node1 would fail with another message).
LEAVING = {  # paths that leave themselves, and what is said of them
    f"{VM_DIR}/": "ends with '/': give it without, as OpenNebula does",
    f"{DISK}/": "ends with '/': give it without, as OpenNebula does",
    f"{VM_DIR}/../8/disk.0": "has a '.' or '..' component",
    f"{VM_DIR}/..": "has a '.' or '..' component",
    "/var/lib/one/datastores/0/9/../../../../../etc/1": "has a '.' or '..' component",
    f"{VM_DIR}/./disk.0": "has a '.' or '..' component",
    f"{VM_DIR}/.": "has a '.' or '..' component",
    f"{VM_DIR}/{'x' * 256}/disk.0": "has a component longer than 255 bytes",
}


def shown(text: str) -> str:
    """text as messages show a value: cut after 200 characters."""
    return text if len(text) <= 200 else text[:200] + "…"


def leaving_args(action: str, where: str) -> tuple:
    """The arguments of a transfer action (mv-to: mv, where being the destination)."""
    return {"ln": (IQN.format(1), where), "mvds": (where, IQN.format(1)), "mv": (where, f"node2:{DISK}"),
            "mv-to": (f"node2:{DISK}", where), "delete": (where,)}[action]


HUGE = f"node1:/{'a' * 120_000}"
IQN_HOSTS = {  # the host part of an IQN given to ln: never a portal
    "localhost:3260": "its host 'localhost:3260' is not a plain host name or IPv4 address",
    "fe80::1": "its host 'fe80::1' is not a plain host name or IPv4 address",
    "127.0.0.1:3260": "its host '127.0.0.1:3260' is not a plain host name or IPv4 address",
    "root@localhost": "contains characters tgtd refuses: '@'",
    "[::1]": "contains characters tgtd refuses: '[]'",
    "-oProxyCommand": "host name '-oProxyCommand' cannot be part of a target name",
    "::1": "host name '::1' cannot be part of a target name",
}
TM_CASES = [
    *[Case(f"tm {action} of {where[:60]!r}", f"tm/{action.partition('-')[0]}",
           args=leaving_args(action, f"node1:{where}"), message=f"path {shown(f'node1:{where}')} {why}")
      for action in ("ln", "mvds", "mv", "mv-to", "delete") for where, why in LEAVING.items()],
    *[Case(f"tm delete of {where!r}", "tm/delete", args=(f"node1:{where}",),
           message=f"refusing to delete node1:{where}: not a VM directory (<DS_LOCATION>/<DS_ID>/<VM_ID>) "
                   "or a disk in one (disk.<N>)")
      for where in ["/etc", "/var/7", "/home/1000", "/etc/one/7", "/usr/lib/7", "/proc/1/task/1", "/disk.0",
                    "/run/user/1000", f"{VM_DIR}/deployment.0", f"{VM_DIR}/disk.x", f"{VM_DIR}/disk.0.snap",
                    "/var/lib/one/datastores/0/vm", "/var/lib/one/datastores/0/-9"]],
    Case("tm delete of '/'", "tm/delete", args=("node1:/",),
         message="path node1:/ ends with '/': give it without, as OpenNebula does"),
    *[Case(f"tm {action} of a 120,000-character path", f"tm/{action.partition('-')[0]}", args=args,
           message=f"path node1:/{'a' * 193}… is longer than 4095 characters")
      for action, args in [("ln", (IQN.format(1), HUGE)), ("mvds", (HUGE, IQN.format(1))),
                           ("mv", (HUGE, f"node2:{DISK}")), ("mv-to", (f"node2:{DISK}", HUGE)),
                           ("delete", (HUGE,))]],
    *[Case(f"tm ln of an IQN of host {host!r}", "tm/ln",
           args=(f"iqn.2012-02.org.opennebula:{host}.vg-one.lv-one-1", f"node1:{DISK}"), message=why)
      for host, why in IQN_HOSTS.items()],
    *[Case(f"tm mvds of an IQN of host {host!r}", "tm/mvds",
           args=(f"node1:{DISK}", f"iqn.2012-02.org.opennebula:{host}.vg-one.lv-one-1"), message=why)
      for host, why in IQN_HOSTS.items() if "tgtd refuses" in why or "target name" in why],
    # user@host is a host as ssh has it: refused for what follows it
    Case("tm delete of root@node1:/etc", "tm/delete", args=("root@node1:/etc",),
         message="refusing to delete root@node1:/etc: not a VM directory"),
    Case("tm ln to root@node1 with '..'", "tm/ln", args=(IQN.format(1), f"root@node1:{VM_DIR}/../8/disk.0"),
         message=f"path root@node1:{VM_DIR}/../8/disk.0 has a '.' or '..' component"),
    Case("tm mv from root@node1 with a trailing slash", "tm/mv", args=(f"root@node1:{VM_DIR}/", f"node2:{VM_DIR}"),
         message=f"path root@node1:{VM_DIR}/ ends with '/'"),
    Case("tm ln to root@node1 of an IQN of host 'localhost:3260'", "tm/ln",
         args=("iqn.2012-02.org.opennebula:localhost:3260.vg-one.lv-one-1", f"root@node1:{DISK}"),
         message="IQN iqn.2012-02.org.opennebula:localhost:3260.vg-one.lv-one-1: its host 'localhost:3260' is not"),
    *[Case(f"tm {action} to host {host!r}", f"tm/{action}", args=leaving_args(action, f"{host}:{DISK}"),
           message=f"invalid host name {host!r}")
      for action in ("ln", "delete") for host in ["-oProxyCommand=touch x", "node1;reboot", "node 1", "$(x)"]],
]

# rm of a SOURCE that is not this datastore's image 77 (HOST localhost)
RM_CASES = [
    *[Case(f"rm SOURCE of {what}", "datastore/rm", image={"SOURCE": source}, datastore=datastore,
           message=f"SOURCE {source} is not image 77 of this datastore")
      for what, source, datastore in [
          ("another base IQN", "iqn.2000-01.com.example:localhost.vg-one.lv-one-77", {}),
          ("another target host", "iqn.2012-02.org.opennebula:tgtserver.vg-one.lv-one-77", {}),
          ("another target host, by address", "iqn.2012-02.org.opennebula:127.0.0.1.vg-one.lv-one-77", {}),
          ("another volume group", "iqn.2012-02.org.opennebula:localhost.vg-two.lv-one-77", {}),
          ("localhost, for a datastore on node1", IQN.format(77), {"HOST": "node1"}),
          ("the default base IQN, for a datastore of another one", IQN.format(77),
           {"BASE_IQN": "iqn.2000-01.com.example"}),
      ]],
]

# Image PATHs that are not plain files, or that lead where images may not come from
FILE_KINDS = {  # how to make each, at path, in tmp (which has a file restricted/secret.img)
    "fifo": lambda path, tmp: os.mkfifo(path),
    "directory": lambda path, tmp: path.mkdir(),
    "link to a fifo": lambda path, tmp: (os.mkfifo(tmp / "a-fifo"), path.symlink_to(tmp / "a-fifo")),
    "link to dev-null": lambda path, tmp: path.symlink_to("/dev/null"),
    "link into restricted": lambda path, tmp: path.symlink_to(tmp / "restricted" / "secret.img"),
    "link to a directory into restricted": lambda path, tmp: path.symlink_to(tmp / "restricted"),
    "link into etc-one": lambda path, tmp: path.symlink_to("/etc/one/oned.conf"),
    "link to itself": lambda path, tmp: path.symlink_to(path),
    "dangling link": lambda path, tmp: path.symlink_to(tmp / "nothing"),
}
RESTRICTED = {"RESTRICTED_DIRS": f"/nonexistent {TMP}/restricted"}
PATH_CASES = [
    # files made by the case (FILE_KINDS) that cannot be read as an image
    *[Case(name, "datastore/cp", file_kind=kind, message=f"cannot read image file {TMP}/{kind}: {reason}")
      for name, kind, reason in [
          ("PATH is a fifo", "fifo", "not a regular file"),
          ("PATH is a directory of the test", "directory", "Is a directory"),
          ("PATH is a link to a fifo", "link to a fifo", "not a regular file"),
          ("PATH is a link to /dev/null", "link to dev-null", "not a regular file"),
          ("PATH is a link to itself", "link to itself", "Too many levels of symbolic links"),
          ("PATH is a dangling link", "dangling link", "No such file or directory"),
      ]],
    Case("PATH is /dev/null", "datastore/cp", image={"PATH": "/dev/null"},
         message="cannot read image file /dev/null: not a regular file"),
    Case("PATH is /dev/zero", "datastore/cp", image={"PATH": "/dev/zero"},
         message="cannot read image file /dev/zero: not a regular file"),
    # a regular file to stat(2), of size 0, that reads as more: refused when it does
    Case("PATH is /proc/self/environ", "datastore/cp", image={"PATH": "/proc/self/environ"},
         message="copying /proc/self/environ to "),
    Case("PATH in RESTRICTED_DIRS", "datastore/cp", datastore=RESTRICTED,
         image={"PATH": f"{TMP}/restricted/secret.img"},
         message=f"Not allowed to copy image file {TMP}/restricted/secret.img"),
    Case("PATH is a link into RESTRICTED_DIRS", "datastore/cp", datastore=RESTRICTED,
         file_kind="link into restricted", message=f"Not allowed to copy image file {TMP}/link into restricted"),
    Case("PATH through a link to a directory in RESTRICTED_DIRS", "datastore/cp", datastore=RESTRICTED,
         file_kind="link to a directory into restricted",
         image={"PATH": f"{TMP}/link to a directory into restricted/secret.img"},
         message=f"Not allowed to copy image file {TMP}/link to a directory into restricted/secret.img"),
    Case("PATH with .. into RESTRICTED_DIRS", "datastore/cp", datastore=RESTRICTED,
         image={"PATH": f"{TMP}/elsewhere/../restricted/secret.img"},
         message=f"Not allowed to copy image file {TMP}/elsewhere/../restricted/secret.img"),
    Case("PATH in RESTRICTED_DIRS given with a trailing slash", "datastore/cp",
         datastore={"RESTRICTED_DIRS": f"{TMP}/restricted/"}, image={"PATH": f"{TMP}/restricted/secret.img"},
         message=f"Not allowed to copy image file {TMP}/restricted/secret.img"),
    Case("PATH in a SAFE_DIRS inside RESTRICTED_DIRS", "datastore/cp",
         datastore={"RESTRICTED_DIRS": TMP, "SAFE_DIRS": f"{TMP}/restricted"},
         image={"PATH": f"{TMP}/restricted/secret.img"}, ok=True),
    Case("PATH next to RESTRICTED_DIRS, sharing its name's start", "datastore/cp",
         datastore={"RESTRICTED_DIRS": f"{TMP}/plain"}, file_name="plain.img", ok=True),
    Case("PATH is a link into /etc/one", "datastore/cp", file_kind="link into etc-one",
         message=f"Not allowed to copy image file {TMP}/link into etc-one"),
    Case("PATH is a file:// URL", "datastore/cp", image={"PATH": "file:///etc/passwd"},
         message="cannot read image file file:///etc/passwd: No such file or directory"),
    Case("PATH is an upper-case HTTP:// URL", "datastore/cp", image={"PATH": "HTTP://127.0.0.1:1/x"},
         message="cannot read image file HTTP://127.0.0.1:1/x"),
    Case("stat of a fifo", "datastore/stat", file_kind="fifo",
         message=f"cannot read image file {TMP}/fifo: not a regular file"),
    Case("stat of a link into RESTRICTED_DIRS", "datastore/stat", datastore=RESTRICTED,
         file_kind="link into restricted", message=f"Not allowed to copy image file {TMP}/link into restricted"),
    # a URL whose server redirects elsewhere: never followed off http(s)
    *[Case(f"PATH URL redirecting to {to}", "datastore/cp", redirect_to=to,
           message="cannot download http://127.0.0.1:")
      for to in ["file:///etc/passwd", "data:,hello", "ftp://{trap}/image.img"]],
]


CASES = [
    *TEMPLATE_CASES,
    *GOOD_TEMPLATE_CASES,
    *TM_CASES,
    *RM_CASES,
    *PATH_CASES,
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
         message="ID must be a non-negative integer"),
    Case("image ID negative", "datastore/cp", file_name="plain.img", image_id="-7",
         message="ID must be a non-negative integer"),
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
         message="unsupported filesystem '-V'"),
    Case("mkfs FSTYPE with an injection", "datastore/mkfs", image={"SIZE": "8", "FSTYPE": f"ext4;touch {CANARY}"},
         message="unsupported filesystem"),
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
    assert len(CASES) >= 150


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
    "stat of a fifo",
}]

Run = Callable[..., Result]  # run(driver, action, *args): remotes/<driver>/iscsi/<action> ARGS


def test_every_stub_of_the_corpus_is_run_as_a_stub():
    assert len(STUB_CASES) == 9
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


class Redirector:
    """A loopback HTTP server answering every GET with a redirect to `to`,
    and a trap: a port that counts the connections made to it (and closes
    them at once)."""

    def __init__(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", owner.to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, format, *args) -> None:
                pass

        self.to = ""
        self.visits = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.trap = socket.create_server(("127.0.0.1", 0))
        self.trap_address = f"127.0.0.1:{self.trap.getsockname()[1]}"
        self.threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                        threading.Thread(target=self._catch, daemon=True)]
        for thread in self.threads:
            thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/image.img"

    def _catch(self) -> None:
        while True:
            try:
                connection, _ = self.trap.accept()
            except OSError:  # closed
                return
            self.visits += 1
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.trap.close()


@pytest.fixture
def redirector():
    server = Redirector()
    yield server
    server.close()


def at(text: str, tmp_path: Path) -> str:
    """text with TMP standing for tmp_path."""
    return text.replace(TMP, str(tmp_path))


def image_path(case: Case, tmp_path: Path, redirector) -> dict:
    """IMAGE/PATH as the case wants it, the files it names made."""
    restricted = tmp_path / "restricted"
    restricted.mkdir()
    random_image(restricted / "secret.img", MIB // 2)
    if case.file_name:
        return {"PATH": str(random_image(tmp_path / case.file_name, MIB // 2))}
    if case.file_kind:
        FILE_KINDS[case.file_kind](tmp_path / case.file_kind, tmp_path)
        if "PATH" not in case.image:
            return {"PATH": str(tmp_path / case.file_kind)}
    if case.redirect_to:
        redirector.to = case.redirect_to.format(trap=redirector.trap_address)
        return {"PATH": redirector.url()}
    return {}


def check_case(case: Case, run: Run, tgtd, tmp_path: Path, canaries, redirector=None) -> None:
    pool = tmp_path / "pool"
    datastore = {"BACKEND": "file", "POOL_DIR": str(pool), "HOST": "localhost",
                 **{key: at(value, tmp_path) for key, value in case.datastore.items()}}
    image = {key: at(value, tmp_path) for key, value in case.image.items()}
    image.update(image_path(case, tmp_path, redirector))
    args = case.args or (action_xml(image, case.template, datastore), case.image_id)
    driver, action = case.action.split("/")
    done = run(driver, action, *args)
    if case.ok:
        assert done.rc == 0, done.err
        assert done.out == f"{IQN.format(case.image_id)} 1\n"
        assert len(tgtd.target_ids()) == 1
        assert (Path(datastore["POOL_DIR"]) / "vg-one" / f"lv-one-{case.image_id}").is_file()
        rm = run("datastore", "rm", action_xml({"SOURCE": IQN.format(case.image_id)}, {}, datastore), case.image_id)
        assert rm.rc == 0, rm.err
    else:
        assert done.rc != 0
        message = at(case.message, tmp_path)
        assert error_block(done.err).startswith(message) or message in error_block(done.err), \
            error_block(done.err)
        assert len(done.err) < 1000, f"{len(done.err)} characters on stderr"
    password = datastore.get("CHAP_PASSWORD", "").strip()
    assert not password or password not in done.err + done.out, "the CHAP password is shown"
    if case.redirect_to:
        assert redirector.visits == 0, f"the redirect to {redirector.to} was followed"
    assert canaries() == []
    assert tgtd.target_ids() == []
    assert not pool.exists() or not any(pool.rglob("lv-one-*"))
    conf_dir = tmp_path / "tgt-conf.d" / "one-iscsi"
    assert not conf_dir.exists() or not any(conf_dir.iterdir())


def redirector_of(case: Case, request):
    return request.getfixturevalue("redirector") if case.redirect_to else None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(case, in_process, tgtd, tmp_path, canaries, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    check_case(case, in_process, tgtd, tmp_path, canaries, redirector_of(case, request))


@pytest.mark.parametrize("case", STUB_CASES, ids=[case.name for case in STUB_CASES])
def test_the_stubs_pass_hostile_input_through(case, through_stub, tgtd, tmp_path, canaries, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    check_case(case, through_stub, tgtd, tmp_path, canaries, redirector_of(case, request))


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
