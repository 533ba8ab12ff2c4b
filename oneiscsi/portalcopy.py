"""Writing an image through the target's own iSCSI portal (COPY_VIA=iscsi).

The volume is exported before its data is copied, so this machine can write
it as an iSCSI initiator with qemu-img (libiscsi), as any host would read it,
instead of sending it through ssh. The target admits this machine for the
copy only: an initiator name made for this one copy is added to its ACL
(unless the ACL is ALL) and removed after it; the datastore's CHAP account,
when set, is given to qemu-img through a secret file, never on its command
line. Pure: commands and texts only.
"""
from __future__ import annotations

import os
from typing import Optional

from .command import Command, command

COPY_NAME_PREFIX = "one-iscsi-copy"


def initiator_name(base_iqn: str) -> str:
    """An initiator name for one copy, not to be guessed by anyone else."""
    return f"{base_iqn}:{COPY_NAME_PREFIX}.{os.urandom(8).hex()}"  # not secrets: its import costs start-up


def portal(copy_portal: str, host: str, port: int) -> str:
    """host:port of the portal as this machine reaches it."""
    if not copy_portal:
        return f"{host}:{port}"
    return copy_portal if ":" in copy_portal else f"{copy_portal}:{port}"


def target_options(portal_address: str, iqn: str, initiator: str, chap_user: str = "",
                   secret_id: str = "") -> str:
    """qemu's options of LUN 1 of the target iqn (values hold no comma: names and addresses)."""
    options = f"driver=iscsi,transport=tcp,portal={portal_address},target={iqn},lun=1,initiator-name={initiator}"
    if chap_user:
        options += f",user={chap_user},password-secret={secret_id}"
    return options


def convert(source: str, source_format: str, target: str, secret_file: Optional[str] = None) -> Command:
    """qemu-img writing source onto the LUN of target's options, which reads
    as zeros already: zero blocks are skipped; writes go out of order (-W)."""
    secret = ["--object", f"secret,id=chap,file={secret_file}"] if secret_file else []
    return command("qemu-img", "convert", "-n", "-W", "--target-is-zero", *secret,
                   "-f", source_format, "--target-image-opts", source, target)
