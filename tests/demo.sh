#!/usr/bin/env bash
# make demo: register a 64 MiB image through the OpenNebula remote stubs, as
# OpenNebula calls them, against a private tgtd on loopback; read it back over
# iSCSI; remove it. Uses the file backend: no LVM or device-mapper needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" LC_ALL=C

work=$(mktemp -d /tmp/one-iscsi-demo.XXXXXX)
control=$((20000 + RANDOM % 10000))
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tgtd_pid=""

cleanup() {
  if [ -n "$tgtd_pid" ]; then
    for tid in $(tgtadm -C "$control" --op show --mode target 2>/dev/null | awk '/^Target/ {sub(":", "", $2); print $2}'); do
      tgtadm -C "$control" --op delete --force --mode target --tid "$tid" || true
    done
    tgtadm -C "$control" --op delete --mode system >/dev/null 2>&1 || kill -9 "$tgtd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "starting a private tgtd (control port $control, portal 127.0.0.1:$port)"
tgtd -f -C "$control" --iscsi "portal=127.0.0.1:$port" >"$work/tgtd.log" 2>&1 &
tgtd_pid=$!
for _ in $(seq 200); do  # bounded wait, at most ~10 s
  tgtadm -C "$control" --op show --mode sys >/dev/null 2>&1 && break
  sleep 0.05
done
tgtadm -C "$control" --op show --mode portal | grep -q "127.0.0.1:$port," \
  || { echo "tgtd did not listen on 127.0.0.1:$port" >&2; exit 1; }
export ONE_ISCSI_TGTADM="tgtadm -C $control"
# the demo's target config files and lock stay in its own folder
export ONE_ISCSI_CONF_DIR="$work/tgt-conf.d/one-iscsi" ONE_ISCSI_LOCK_FILE="$work/one-iscsi.lock"
# the OpenNebula this demo plays; a real front-end's installation says it (see OpenNebula versions)
export ONE_ISCSI_OPENNEBULA_VERSION=7.0

step "making a 64 MiB sample image"
head -c $((64 * 1024 * 1024)) /dev/urandom > "$work/sample.img"
sha256sum "$work/sample.img" | tee "$work/sample.sha256"

step "registering it as OpenNebula 7 does: remotes/datastore/iscsi/cp 42, DS_DRIVER_ACTION_DATA on stdin"
action=$(base64 -w0 <<XML
<DS_DRIVER_ACTION_DATA><IMAGE><ID>42</ID><PATH>$work/sample.img</PATH></IMAGE><DATASTORE><ID>100</ID><TEMPLATE><BACKEND>file</BACKEND><POOL_DIR>$work/pool</POOL_DIR><HOST>localhost</HOST></TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>
XML
)
read -r iqn format < <(printf %s "$action" | remotes/datastore/iscsi/cp 42)
echo "cp printed: $iqn $format"

step "one-iscsi target list"
one-iscsi target list

step "reading LUN 1 back over iSCSI with qemu-img"
qemu-img convert -f raw -O raw "iscsi://127.0.0.1:$port/$iqn/1" "$work/readback.img"
sha256sum "$work/readback.img"
if [ "$(sha256sum < "$work/readback.img")" = "$(sha256sum < "$work/sample.img")" ]; then
  echo "checksums match"
else
  echo "checksums DIFFER" >&2; exit 1
fi

step "removing it as OpenNebula 3.4 does: remotes/datastore/iscsi/rm <base64 DS_DRIVER_ACTION_DATA> 42"
rm_action=$(base64 -w0 <<XML
<DS_DRIVER_ACTION_DATA><IMAGE><ID>42</ID><SOURCE>$iqn</SOURCE></IMAGE><DATASTORE><ID>100</ID><TEMPLATE><BACKEND>file</BACKEND><POOL_DIR>$work/pool</POOL_DIR><HOST>localhost</HOST></TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>
XML
)
remotes/datastore/iscsi/rm "$rm_action" 42
one-iscsi target list
[ -z "$(ls -A "$work/pool/vg-one")" ] && echo "volume file removed"

step "stopping tgtd"
