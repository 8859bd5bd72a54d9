"""A newcomer's `sam deploy --guided`: the real SAM CLI (the one scripts/tools-venv installs),
under a pseudo-terminal, every prompt answered with Enter, until SAM goes to AWS.

No AWS account is reachable here: the endpoint is a closed local port, so SAM's first call
(the managed bucket's stack, "Looking for resources needed for deployment") fails. Reaching
that call is what passing means: every prompt before it took its default.
"""

import os
import pty
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / ".venv-tools" / "bin" / "sam"

# What SAM prints once the questions are over and it turns to AWS.
GOES_TO_AWS = re.compile(r"Looking for resources needed for deployment|Error: .*(credential|endpoint|connect)", re.I)
PARAMETER = re.compile(r"Parameter (\w+)(?: \[[^\]\n]*\])?: ")
# SAM prints its prompts in bold.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# A question waiting for its answer: SAM ends each with ": " (or "]: ").
ASKING = re.compile(r"(\]|\)|:)\s*$")


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_parameters() -> list[str]:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    return list(template["Parameters"])


def guided_deploy_with_enter(workdir: Path, timeout: float = 240.0) -> tuple[str, list[str]]:
    """Runs `sam deploy --guided` in `workdir`, pressing Enter at every question; returns what
    it printed and the parameters it asked for, in order."""
    env = {
        "PATH": f"{SAM.parent}:{os.environ.get('PATH', '')}",
        "HOME": str(workdir),  # no ~/.aws of the machine's
        "SAM_CLI_TELEMETRY": "0",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "AWS_EC2_METADATA_DISABLED": "true",
        # A closed port: the first AWS call fails at once instead of reaching AWS.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
    }
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(SAM), "deploy", "--guided", "--template-file", "template.yaml"],
        cwd=workdir,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = ""
    answered_at = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096).decode("utf-8", "replace")
                except OSError:
                    break  # the process closed the terminal
                if not chunk:
                    break
                output += ANSI.sub("", chunk)
                if GOES_TO_AWS.search(output):
                    break
                continue
            if process.poll() is not None:
                break
            # Quiet, and the last line is a question not yet answered: Enter.
            tail = output[answered_at:].rstrip("\n").splitlines()[-1:] or [""]
            if len(output) > answered_at and ASKING.search(tail[0]):
                os.write(leader, b"\r")
                answered_at = len(output)
    finally:
        process.kill()
        process.wait()
        os.close(leader)
    return output, PARAMETER.findall(output)


def test_guided_deploy_passes_on_enter_and_asks_every_parameter_once_in_order(tmp_path):
    for name in ("template.yaml", "member-role.yaml", "samconfig.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    output, asked = guided_deploy_with_enter(tmp_path)
    assert GOES_TO_AWS.search(output), f"SAM never got to AWS; it printed:\n{output[-3000:]}"
    assert len(asked) == len(set(asked)), f"a parameter asked twice (no default taken): {asked}"
    assert asked == template_parameters(), f"asked {asked}"


def test_the_parameters_come_in_the_order_a_user_thinks_and_match_the_console_groups():
    names = template_parameters()
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [p for g in groups for p in g["Parameters"]]
    assert grouped == names, "the console's groups list the parameters in the template's order"
    # Schedule and cadence first, together: what every user decides before anything else.
    assert names[:3] == ["ScheduleExpression", "MinIntervalMinutes", "CoverageSlackMinutes"]
    labels = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterLabels"]
    assert set(labels) == set(names), "every parameter has a label"
    for name, spec in template["Parameters"].items():
        assert "Default" in spec, f"{name} has no default: Enter would not pass"
        assert not spec.get("NoEcho"), f"{name} is NoEcho: SAM asks it again on Enter"


def test_samconfig_pins_no_region_and_has_an_organization_environment():
    text = (ROOT / "samconfig.toml").read_text()
    assert not re.search(r"^\s*region\s*=", text, re.M), "the user's profile picks the region"
    assert "[org.deploy.parameters]" in text


def test_the_serverless_application_repository_metadata_is_complete_and_versioned():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    app = template["Metadata"]["AWS::ServerlessRepo::Application"]
    cargo = (ROOT / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert app["SemanticVersion"] == version, "the release's version is Cargo.toml's"
    license_id = re.search(r'^license = "([^"]+)"', cargo, re.M).group(1)
    assert app["SpdxLicenseId"] == license_id
    # The limits of "AWS::ServerlessRepo::Application metadata section properties".
    assert re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", app["Name"])
    assert 1 <= len(app["Description"]) <= 256
    assert re.fullmatch(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?", app["Author"])
    assert len(app["Labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in app["Labels"])
    for local in ("LicenseUrl", "ReadmeUrl"):
        assert (ROOT / app[local]).is_file(), local


@pytest.mark.skipif("RELEASE_DIR" not in os.environ, reason="scripts/release runs it on the folder it writes")
def test_a_release_folder_deploys_guided_on_enter_with_no_toolchain(tmp_path):
    """What a user of a release does: `sam deploy --guided` in the downloaded folder, no
    source and no build, Enter at every question."""
    release = Path(os.environ["RELEASE_DIR"])
    folder = tmp_path / release.name
    shutil.copytree(release, folder)
    assert not (folder / "Cargo.toml").exists() and not (folder / "src").exists()
    output, asked = guided_deploy_with_enter(folder)
    assert GOES_TO_AWS.search(output), f"SAM never got to AWS; it printed:\n{output[-3000:]}"
    assert asked == template_parameters(), f"asked {asked}"
    assert "Error" not in output.split("Looking for resources")[0], output[-3000:]
