"""The systemd packaging: the unit and its drop-ins (Xvfb, GPU) as install-service.sh renders them.

The files are rendered with ``scripts/install-service.sh --dry-run`` (no root, nothing
written), then checked by ``systemd-analyze verify`` (skipped where it is not installed:
Debian's ``systemd`` package) and by a small parser of the unit syntax.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-service.sh"
UNIT_DIR = "/etc/systemd/system"
UNIT = "sora-watcher.service"
DROPIN = f"{UNIT}.d/xvfb.conf"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not found (Debian: apt-get install systemd); unit not verified",
)
UNDER_HOMES = ("/home/", "/root/", "/run/user/")


# --- Helpers --------------------------------------------------------------------------------


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def rendered(output: str) -> dict[str, str]:
    """The files a dry run would write, from its ``==> path`` ... ``<== path`` blocks."""
    blocks = re.finditer(r"^==> (\S+)\n(.*?)\n<== \1$", output, re.DOTALL | re.MULTILINE)
    return {match.group(1): match.group(2) + "\n" for match in blocks}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> keys -> values in order, as systemd reads them: comments (# ;) skipped,
    a trailing backslash continues the line, an empty assignment resets the key's list."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    assert not pending, "the file ends inside a continued line"
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times: {values}"
    return values[0]


def seconds(span: str) -> float:
    """A systemd time span ("120", "120s", "2min 30s", "5m") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        assert unit in units, f"time unit not handled here: {span!r}"
        total += float(number) * units[unit]
    return total


def is_yes(value: str) -> bool:
    return value.lower() in ("yes", "true", "on", "1")


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A folder set and a venv whose console script is a stub (verify wants it executable)."""
    home = tmp_path / "folder-set"
    home.mkdir()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "sora-watcher"
    exe.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    exe.chmod(0o755)
    return {"home": home, "venv": venv, "units": tmp_path / "units"}


def render(layout: dict[str, Path], *extra: str) -> dict[str, str]:
    args = ["--dry-run", "--home", str(layout["home"]), "--venv", str(layout["venv"]), *extra]
    result = run_script(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    files = rendered(result.stdout)
    assert f"{UNIT_DIR}/{UNIT}" in files, result.stdout
    return files


def write_units(layout: dict[str, Path], files: dict[str, str]) -> Path:
    """The rendered files under a private unit directory, as they would be under /etc."""
    for path, text in files.items():
        target = layout["units"] / Path(path).relative_to(UNIT_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return layout["units"] / UNIT


def verify(unit_file: Path) -> list[str]:
    """``systemd-analyze verify``: its exit code must be 0, and the lines about our files
    (warnings such as an unknown key exit 0 too) are returned."""
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    output = (result.stdout + result.stderr).splitlines()
    ours = [line for line in output if "sora-watcher" in line or str(unit_file.parent) in line]
    assert result.returncode == 0, "\n".join(output)
    return ours


# --- systemd-analyze verify -----------------------------------------------------------------


@needs_systemd_analyze
def test_rendered_unit_passes_systemd_analyze_verify(layout: dict[str, Path]) -> None:
    unit_file = write_units(layout, render(layout))
    assert verify(unit_file) == []


@needs_systemd_analyze
def test_unit_with_the_xvfb_dropin_passes_systemd_analyze_verify(
    layout: dict[str, Path],
) -> None:
    files = render(layout, "--xvfb")
    assert f"{UNIT_DIR}/{DROPIN}" in files
    unit_file = write_units(layout, files)
    assert verify(unit_file) == []


@needs_systemd_analyze
def test_the_gpu_dropin_gives_the_daemon_the_real_dev_and_passes_verify(
    layout: dict[str, Path],
) -> None:
    """Under the unit's PrivateDevices=yes torch sees no GPU and SDXL falls back to the CPU."""
    files = render(layout, "--gpu", "--xvfb")
    gpu = parse_unit(files[f"{UNIT_DIR}/{UNIT}.d/gpu.conf"])["Service"]
    assert parse_unit(files[f"{UNIT_DIR}/{UNIT}"])["Service"]["PrivateDevices"] == ["yes"]
    assert gpu["PrivateDevices"] == ["no"]
    unit_file = write_units(layout, files)
    assert verify(unit_file) == []
    assert f"{UNIT_DIR}/{UNIT}.d/gpu.conf" not in render(layout)  # not asked: not installed


@needs_systemd_analyze
def test_verify_reads_the_dropin_and_catches_a_bad_exec(layout: dict[str, Path]) -> None:
    """Guards for the two tests above: verify does read a drop-in next to the unit, and
    does fail on an ExecStart= that is not there (else they would prove nothing)."""
    files = render(layout, "--xvfb")
    files[f"{UNIT_DIR}/{DROPIN}"] += "NoSuchSetting=1\n"
    unit_file = write_units(layout, files)
    assert any("NoSuchSetting" in line for line in verify(unit_file))

    shutil.rmtree(unit_file.parent / f"{UNIT}.d")
    (layout["venv"] / "bin" / "sora-watcher").unlink()
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "sora-watcher" in result.stdout + result.stderr


# --- What the unit says ---------------------------------------------------------------------


def test_rendered_unit_has_the_required_settings(layout: dict[str, Path]) -> None:
    text = render(layout)[f"{UNIT_DIR}/{UNIT}"]
    home, venv = str(layout["home"]), str(layout["venv"])
    # every placeholder is filled (comments keep them, as documentation)
    settings = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in settings if re.search(r"@[A-Z_]+@", line)]

    unit = parse_unit(text)
    service = "Service"
    assert one(unit, service, "Type") == "notify"
    assert one(unit, service, "NotifyAccess") == "main"
    assert one(unit, service, "User") == "sora"
    assert one(unit, service, "Group") == "sora"
    assert one(unit, service, "WorkingDirectory") == home
    assert one(unit, service, "EnvironmentFile") == f"-{home}/.env"
    assert f"SORA_HOME={home}" in unit[service]["Environment"]
    assert one(unit, service, "ExecStart") == f"{venv}/bin/sora-watcher run"

    # restarts, time limits, watchdog
    assert one(unit, service, "Restart") == "on-failure"
    assert seconds(one(unit, service, "RestartSec")) >= 1
    assert set(one(unit, service, "RestartPreventExitStatus").split()) == {"2", "3", "64"}
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1
    assert seconds(one(unit, service, "TimeoutStartSec")) >= 60  # browser start
    assert seconds(one(unit, service, "TimeoutStopSec")) > 60  # > one generation (SORA_TIMEOUT)
    # the heartbeat pauses during a generation (up to SORA_TIMEOUT=60 s plus download)
    assert seconds(one(unit, service, "WatchdogSec")) > 2 * 60
    assert one(unit, service, "KillMode") in ("mixed", "control-group")
    assert one(unit, service, "StandardOutput") == "journal"

    # hardening
    assert is_yes(one(unit, service, "NoNewPrivileges"))
    assert one(unit, service, "ProtectSystem") == "strict"
    assert home in one(unit, service, "ReadWritePaths").split()
    assert is_yes(one(unit, service, "PrivateTmp"))
    assert one(unit, service, "ProtectHome") in ("yes", "read-only", "tmpfs")
    assert is_yes(one(unit, service, "PrivateDevices"))
    assert one(unit, service, "UMask") == "0077"
    assert unit[service]["CapabilityBoundingSet"] == []  # empty: no capability at all
    assert not is_yes(one(unit, service, "MemoryDenyWriteExecute"))  # V8's JIT needs W+X
    namespaces = one(unit, service, "RestrictNamespaces").split()
    assert {"user", "pid", "net"} <= set(namespaces)  # Chromium's sandbox needs these
    assert "yes" not in namespaces
    families = set(one(unit, service, "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    syscalls = one(unit, service, "SystemCallFilter")
    assert syscalls.startswith("~")  # a deny list
    assert "@mount" not in syscalls  # chroot(), used by Chromium's namespace sandbox
    assert "@privileged" not in syscalls  # capset(), setresuid()... inside its namespace
    assert one(unit, service, "SystemCallArchitectures") == "native"
    assert one(unit, service, "ProcSubset") != "pid"  # the browser does not start with it
    for key in (
        "RestrictSUIDSGID",
        "LockPersonality",
        "RestrictRealtime",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectClock",
        "ProtectHostname",
        "ProtectControlGroups",
    ):
        assert is_yes(one(unit, service, key)), key
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_xvfb_dropin_runs_the_daemon_headed_under_xvfb_run(layout: dict[str, Path]) -> None:
    text = render(layout, "--xvfb")[f"{UNIT_DIR}/{DROPIN}"]
    dropin = parse_unit(text)["Service"]
    assert "SORA_HEADLESS=false" in dropin["Environment"]
    # an empty ExecStart= first (parse_unit applies it), then exactly one new command
    assert re.search(r"^ExecStart=$\n^ExecStart=\S", text, re.MULTILINE)
    [command] = dropin["ExecStart"]
    assert "/usr/bin/xvfb-run -a " in command
    assert f"{layout['venv']}/bin/sora-watcher run" in command
    assert "-u WATCHDOG_PID" in command  # the daemon is not the main process any more
    assert "-u NOTIFY_SOCKET" in command  # Xvfb must not send READY=1 in its place
    assert dropin["NotifyAccess"] == ["all"]
    [stop] = dropin["ExecStop"]
    assert "pkill -TERM" in stop  # the warm stop reaches the daemon, not only xvfb-run
    assert dropin["ProtectProc"] == ["default"]


def test_protect_home_follows_where_the_files_live(layout: dict[str, Path]) -> None:
    unit = parse_unit(render(layout)[f"{UNIT_DIR}/{UNIT}"])
    checkout_in_a_home = str(ROOT).startswith(UNDER_HOMES)
    expected = "read-only" if checkout_in_a_home else "yes"
    assert one(unit, "Service", "ProtectHome") == expected

    result = run_script("--dry-run", "--home", "/home/alice/sora", "--venv", str(layout["venv"]))
    assert result.returncode == 0, result.stderr
    unit = parse_unit(rendered(result.stdout)[f"{UNIT_DIR}/{UNIT}"])
    assert one(unit, "Service", "ProtectHome") == "read-only"
    assert "/home/alice/sora" in one(unit, "Service", "ReadWritePaths").split()


# --- The install script ---------------------------------------------------------------------


def test_dry_run_lists_the_install_steps(layout: dict[str, Path]) -> None:
    result = run_script(
        "--dry-run", "--home", str(layout["home"]), "--venv", str(layout["venv"]), "--xvfb"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    home = str(layout["home"])
    assert "dry run: nothing is changed" in out
    assert f"would write: {UNIT_DIR}/{UNIT}" in out
    assert f"would write: {UNIT_DIR}/{DROPIN}" in out
    assert f"chown -R sora:sora {home}" in out
    assert f"install -d -m 0700 -o sora -g sora {home}/inbox" in out
    assert "would run: systemctl daemon-reload" in out
    assert "systemctl enable --now sora-watcher" in out
    assert "journalctl -u sora-watcher -f" in out
    if subprocess.run(["id", "-u", "sora"], capture_output=True, check=False).returncode:
        assert "useradd --system" in out and "--shell /usr/sbin/nologin" in out


def test_uninstall_dry_run_lists_the_removal_steps() -> None:
    result = run_script("--uninstall", "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    steps = [
        f"would run: systemctl disable --now {UNIT}",
        f"would run: rm -f {UNIT_DIR}/{DROPIN}",
        f"would run: rm -f {UNIT_DIR}/{UNIT}",
        "would run: systemctl daemon-reload",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, out
    assert positions == sorted(positions), "stop and disable first, reload last"
    # the folder set and the user are kept, with the commands to remove them
    assert "Kept on purpose" in out
    assert "userdel sora" in out
    assert "rm -rf " in out


@pytest.mark.parametrize(
    ("home", "message"),
    [
        ("/etc/sora", "system folder"),
        ("/var/lib", "system folder"),
        ("/srv", "too close to /"),
        ("/home/alice", "whole home folder"),
        ("/var/lib/sora watcher", "characters a unit file cannot hold"),
        ("/var/lib/100%", "characters a unit file cannot hold"),
    ],
)
def test_install_refuses_a_folder_set_it_should_not_chown(
    layout: dict[str, Path], home: str, message: str
) -> None:
    result = run_script("--dry-run", "--home", home, "--venv", str(layout["venv"]))
    assert result.returncode != 0
    assert message in result.stderr


def test_install_refuses_the_checkout_as_folder_set(layout: dict[str, Path]) -> None:
    result = run_script("--dry-run", "--home", str(ROOT), "--venv", str(layout["venv"]))
    assert result.returncode != 0
    assert "contains the checkout" in result.stderr


def test_install_needs_the_console_script(tmp_path: Path) -> None:
    result = run_script("--dry-run", "--home", str(tmp_path / "h"), "--venv", str(tmp_path))
    assert result.returncode != 0
    assert "make install" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may install for real")
def test_install_without_dry_run_needs_root() -> None:
    result = run_script("--home", "/var/lib/sora-watcher")
    assert result.returncode != 0
    assert "must run as root" in result.stderr
