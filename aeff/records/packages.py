"""packages.txt: Python distributions and OS packages, with credentials redacted."""

import importlib.metadata
import json
import shutil
import subprocess

from aeff.records.secrets import redact


def name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """From the metadata's header block alone: `dist.metadata` parses whole files, long
    descriptions included, and even `email`'s header parser took 20 ms for 90 packages."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    fields = dict(
        line.split(": ", 1)
        for line in text.partition("\n\n")[0].splitlines()
        if line[:1].isalpha() and ": " in line
    )
    return fields.get("Name"), fields.get("Version")


def python_packages() -> list[str]:
    lines = set()
    for dist in importlib.metadata.distributions():
        name, version = name_and_version(dist)
        if not name:
            continue
        line = f"{name}=={version}"
        direct_url = dist.read_text("direct_url.json")
        if direct_url:
            info = json.loads(direct_url)
            if "vcs_info" in info or "archive_info" in info:
                line = f"{name} @ {redact(info.get('url', ''))}"
                if commit := info.get("vcs_info", {}).get("commit_id"):
                    line += f"@{commit}"
        lines.add(line)
    return sorted(lines, key=str.lower)


def os_packages() -> list[str]:
    for command in (
        ["dpkg-query", "-W", "-f=${Package}==${Version}\\n"],
        ["rpm", "-qa", "--qf", "%{NAME}==%{VERSION}-%{RELEASE}\\n"],
    ):
        if shutil.which(command[0]):
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if out.returncode == 0:
                return sorted(redact(line) for line in out.stdout.splitlines() if line)
    return []


def packages_text(include_os: bool) -> str:
    lines = ["# Python packages", *python_packages(), "", "# OS packages"]
    if not include_os:
        lines.append("(not recorded: logging.os_packages=false)")
    else:
        lines.extend(os_packages() or ["(none found: no dpkg-query or rpm on this host)"])
    return "\n".join(lines) + "\n"
