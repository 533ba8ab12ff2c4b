"""open-iscsi: builders of `iscsiadm` command lines for the hypervisor hosts. Pure."""
from __future__ import annotations

DEFAULT_PORT = 3260
NO_SESSION_RC = 21  # iscsiadm: "No matching sessions found"
SESSION_EXISTS_RC = 15


def portal(host: str, port: int) -> str:
    """iscsiadm's -p value: the host alone for the standard port."""
    if port == DEFAULT_PORT:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


def update_node(iqn: str, portal: str, name: str, value: str) -> list[str]:
    """value may be a run.Secret (a CHAP password), which --dry-run masks."""
    return ["iscsiadm", "-m", "node", "--targetname", iqn, "-p", portal, "-o", "update",
            "-n", name, "-v", value]


def chap_settings(iqn: str, portal: str, user: str, password: str) -> list[list[str]]:
    return [update_node(iqn, portal, "node.session.auth.authmethod", "CHAP"),
            update_node(iqn, portal, "node.session.auth.username", user),
            update_node(iqn, portal, "node.session.auth.password", password)]
