"""Initiator ACLs and CHAP on new targets, checked with libiscsi's iscsi-inq
against the real tgtd."""
import json
import urllib.parse

import pytest

from support.commands import quiet
from support.driver import action_xml, error_block, random_image, remote
from support.paths import DATA

IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"
PASSWORD = "s3cret-Pass.12"


@pytest.fixture
def ds(tmp_path):
    return {"BACKEND": "file", "POOL_DIR": str(tmp_path / "pool"), "HOST": "localhost"}


def register(tmp_path, image_id, ds, **attributes):
    image = random_image(tmp_path / f"img{image_id}.raw", 1024 * 1024)
    done = remote("datastore", "cp", action_xml({"PATH": str(image)}, {}, {**ds, **attributes}), str(image_id))
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return IQN.format(image_id)


def inquire(tgtd, iqn, initiator=None, user=None, password=None):
    credentials = f"{user}%{urllib.parse.quote(password)}@" if user else ""
    url = f"iscsi://{credentials}{tgtd.portal}/{iqn}/1"
    done = quiet(["iscsi-inq", *(["-i", initiator] if initiator else []), url])
    return done.returncode, done.stdout + done.stderr


def test_default_lets_every_initiator_in(tgtd, ds, tmp_path, cli):
    iqn = register(tmp_path, 1, ds)
    assert inquire(tgtd, iqn)[0] == 0
    assert json.loads(cli("target", "show", "--json", iqn).out)["acl"] == ["ALL"]


def test_address_acl(tgtd, ds, tmp_path, cli):
    allowed = register(tmp_path, 2, ds, INITIATORS="127.0.0.1 192.168.7.0/24")
    assert json.loads(cli("target", "show", "--json", allowed).out)["acl"] == ["127.0.0.1", "192.168.7.0/24"]
    assert inquire(tgtd, allowed)[0] == 0
    refused = register(tmp_path, 3, ds, INITIATORS="10.9.9.9")
    rc, output = inquire(tgtd, refused)
    assert rc != 0 and "Target not found" in output


def test_initiator_name_acl(tgtd, ds, tmp_path):
    iqn = register(tmp_path, 4, ds, INITIATORS="iqn.2000-01.org.example:node1")
    assert inquire(tgtd, iqn, initiator="iqn.2000-01.org.example:node1")[0] == 0
    rc, output = inquire(tgtd, iqn, initiator="iqn.2000-01.org.example:node2")
    assert rc != 0 and "Target not found" in output


def test_chap(tgtd, ds, tmp_path):
    iqn = register(tmp_path, 5, ds, CHAP_USER="oneadmin", CHAP_PASSWORD=PASSWORD)
    rc, output = inquire(tgtd, iqn)
    assert rc != 0 and "Authentication failure" in output
    rc, output = inquire(tgtd, iqn, user="oneadmin", password="wrong-password1")
    assert rc != 0 and "Authentication failure" in output
    assert inquire(tgtd, iqn, user="oneadmin", password=PASSWORD)[0] == 0
    saved = tmp_path / "tgt-conf.d" / "one-iscsi" / f"{iqn}.conf"
    assert f"incominguser oneadmin {PASSWORD}" in saved.read_text()
    assert saved.stat().st_mode & 0o777 == 0o600


def test_access_rules_come_back_with_restore(tgtd, ds, tmp_path, cli):
    iqn = register(tmp_path, 6, ds, INITIATORS="127.0.0.1", CHAP_USER="oneadmin", CHAP_PASSWORD=PASSWORD)
    tgtd.delete_all_targets()
    assert tgtd.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "account", "--user", "oneadmin").returncode == 0
    restored = cli("target", "restore")
    assert restored.rc == 0 and PASSWORD not in restored.out + restored.err
    assert json.loads(cli("target", "show", "--json", iqn).out)["acl"] == ["127.0.0.1"]
    assert "Authentication failure" in inquire(tgtd, iqn)[1]
    assert inquire(tgtd, iqn, user="oneadmin", password=PASSWORD)[0] == 0


def test_password_is_masked_in_dry_run_and_absent_from_errors(tgtd, ds, tmp_path, cli):
    image = random_image(tmp_path / "img.raw", 4096)
    data = action_xml({"PATH": str(image)}, {}, {**ds, "CHAP_USER": "oneadmin", "CHAP_PASSWORD": PASSWORD})
    preview = cli("--dry-run", "image", "cp", data, "7")
    assert preview.rc == 0, preview.err
    assert "--user oneadmin --password '********'" in preview.out
    assert PASSWORD not in preview.out + preview.err
    assert tgtd.target_ids() == []
    failing = {"ONE_ISCSI_TGTADM": f"{DATA / 'fail-when'} '--mode account' tgtadm -C {tgtd.control}"}
    failed = remote("datastore", "cp", data, "9", env=failing)
    assert failed.returncode == 1
    assert error_block(failed.stderr).startswith("allowing initiators failed on localhost")
    assert PASSWORD not in failed.stdout + failed.stderr
    assert tgtd.target_ids() == []
