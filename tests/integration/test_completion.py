"""Shell completion, driven through real bash, zsh and fish: the checked-in
scripts, static words and the IQNs of a live tgtd."""
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from support.wait import wait_for
from oneiscsi import completion

REPO = Path(__file__).resolve().parents[2]
COMPLETIONS = REPO / "completions"
BIN = Path(os.sys.executable).parent
IQN = "iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-{}"


def shell_env():
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root")}


@pytest.mark.parametrize("shell", sorted(completion.FILES))
def test_checked_in_scripts_are_what_the_app_generates(shell):
    assert (COMPLETIONS / completion.FILES[shell]).read_text() == completion.script(shell), \
        "completions/ is out of date: run `make completions`"


def bash_complete(line):
    """The candidates for the end of line, called as bash calls the function:
    COMP_LINE, COMP_POINT, and COMP_WORDS split at the ':' of COMP_WORDBREAKS
    too. bash puts a candidate in place of the current word's part after its
    last ':': returned here with the part before put back, as whole words."""
    words = re.findall(r"[^\s:]+|:", line) + ([""] if line.endswith(" ") else [])
    script = (f"source {COMPLETIONS / 'one-iscsi.bash'}\n"
              f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}\n"
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_one_iscsi_completion one-iscsi\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=30,
                          env=shell_env())
    current = "" if line.endswith(" ") else line.split()[-1]
    return [current[:current.rfind(":") + 1] + reply for reply in done.stdout.split()]


def fish_complete(line):
    done = subprocess.run(["fish", "--no-config", "-c",
                           f"source {COMPLETIONS / 'one-iscsi.fish'}; complete -C {shlex.quote(line)}"],
                          capture_output=True, text=True, timeout=30, env=shell_env())
    return [row.split("\t")[0] for row in done.stdout.splitlines()]


def zsh_complete(line, tmp_path):
    """An interactive zsh in tmux, completion loaded from fpath, TAB pressed once."""
    session = f"one-iscsi-{os.getpid()}-{time.monotonic_ns()}"
    rc = tmp_path / "zdotdir"
    rc.mkdir(exist_ok=True)
    (rc / ".zshrc").write_text(f"fpath=({COMPLETIONS} $fpath)\nautoload -U compinit\ncompinit -u\nPS1='>'\n")
    env = {**shell_env(), "ZDOTDIR": str(rc)}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "250", "-y", "20", "zsh", "-i"],
                   env=env, check=True, timeout=30)
    try:
        screen = lambda: subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                        text=True, timeout=10).stdout
        wait_for(lambda: screen().startswith(">"), timeout=20, what="zsh prompt")
        subprocess.run(["tmux", "send-keys", "-t", session, line, "Tab"], check=True, timeout=10)
        return screen, lambda text: wait_for(lambda: text in screen(), timeout=20, what=repr(text))
    except BaseException:
        subprocess.run(["tmux", "kill-session", "-t", session], timeout=10)
        raise


@pytest.fixture
def live_targets(tgtd, cli):
    for image_id in (5, 50):
        assert cli("target", "new", IQN.format(image_id)).rc == 0
    return [IQN.format(5), IQN.format(50)]


def test_bash(live_targets):
    assert bash_complete("one-iscsi ta") == ["target"]
    assert bash_complete("one-iscsi target de") == ["delete"]
    assert sorted(bash_complete("one-iscsi target delete iqn.")) == live_targets
    assert bash_complete("one-iscsi target delete iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-50") == [
        IQN.format(50)]
    assert sorted(bash_complete("one-iscsi target bind-all ")) == live_targets  # TID|IQN: the names first


def test_bash_completes_past_the_colon_of_an_iqn(live_targets):
    """The words bash gives are split at ':'; what it inserts replaces the
    part after the colon: the raw COMPREPLY must be that part."""
    line = "one-iscsi target delete iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-5"
    script = (f"source {COMPLETIONS / 'one-iscsi.bash'}\nCOMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}\n"
              "COMP_WORDS=(one-iscsi target delete iqn.2012-02.org.opennebula : localhost.vg-one.lv-one-5)\n"
              "COMP_CWORD=5\n_one_iscsi_completion one-iscsi\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    done = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, timeout=30,
                          env=shell_env())
    assert sorted(done.stdout.split()) == ["localhost.vg-one.lv-one-5", "localhost.vg-one.lv-one-50"]


def test_bash_offers_tids_once_a_number_is_typed(live_targets):
    assert sorted(bash_complete("one-iscsi target show ")) == live_targets
    assert sorted(bash_complete("one-iscsi target show 1")) == ["1"]
    assert sorted(bash_complete("one-iscsi lun bind 2")) == ["2"]
    assert sorted(bash_complete("one-iscsi target acl add 2")) == ["2"]
    assert bash_complete("one-iscsi target show 3") == []
    assert sorted(bash_complete("one-iscsi lun list iqn.")) == live_targets


def test_fish(live_targets):
    assert fish_complete("one-iscsi ta") == ["target"]
    assert sorted(fish_complete("one-iscsi target delete iqn.")) == live_targets


def test_zsh_completes_on_the_first_tab(live_targets, tmp_path):
    screen, shows = zsh_complete("one-iscsi ta", tmp_path)
    try:
        shows(">one-iscsi target")  # the word completed in place (tmux trims the trailing space)
    finally:
        subprocess.run(["tmux", "kill-server"], timeout=10)


def test_zsh_completes_live_iqns(live_targets, tmp_path):
    screen, shows = zsh_complete("one-iscsi target tid iqn.2012-02.org.opennebula:localhost.vg-one.lv-one-5",
                                 tmp_path)
    try:
        shows(IQN.format(50))  # both candidates listed under the line
    finally:
        subprocess.run(["tmux", "kill-server"], timeout=10)


def test_a_dead_tgtd_gives_no_candidates_quickly(monkeypatch):
    monkeypatch.setenv("ONE_ISCSI_TGTADM", "tgtadm -C 29998")
    started = time.monotonic()
    assert bash_complete("one-iscsi target delete iqn.") == []
    assert time.monotonic() - started < 15


def test_an_unreachable_host_gives_no_candidates_within_the_bound(monkeypatch, sshd):
    monkeypatch.setenv("ONE_ISCSI_SSH", f"{sshd.ssh} -o Port=1")
    assert bash_complete("one-iscsi target delete --host tgtserver iqn.") == []
