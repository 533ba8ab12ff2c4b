"""open-iscsi: builders of `iscsiadm` command lines for the hypervisor hosts. Pure."""
from __future__ import annotations

NO_SESSION_RC = 21  # iscsiadm: "No matching sessions found"
SESSION_EXISTS_RC = 15


def discovery(target_host: str) -> list[str]:
    return ["iscsiadm", "-m", "discovery", "-t", "st", "-p", target_host]


def login(iqn: str, target_host: str) -> list[str]:
    return ["iscsiadm", "-m", "node", "--targetname", iqn, "-p", target_host, "--login"]


def logout(iqn: str) -> list[str]:
    return ["iscsiadm", "-m", "node", "--targetname", iqn, "--logout"]


def new_node(iqn: str, portal: str) -> list[str]:
    return ["iscsiadm", "-m", "node", "--targetname", iqn, "-p", portal, "-o", "new"]


def delete_node(iqn: str) -> list[str]:
    return ["iscsiadm", "-m", "node", "--targetname", iqn, "-o", "delete"]


def show_node(iqn: str) -> list[str]:
    return ["iscsiadm", "-m", "node", "--targetname", iqn]
