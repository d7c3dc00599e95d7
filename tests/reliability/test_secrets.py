"""Tokens planted where credentials live reach no file that aeff writes."""

import contextlib
import hashlib
import json
import logging
import os
import subprocess

import pytest
import yaml
from helpers import data_overrides, run_aeff

from aeff.cli import app
from aeff.records import secrets
from aeff.records.secrets import redact_log_records

VCS_TOKEN = "ghp_plantedVcsToken0123456789"
REMOTE_TOKEN = "glpat-plantedRemoteToken0123"
ENV_TOKEN = "sk-plantedEnvironmentToken0123"
OVERRIDE_TOKEN = "plantedOverrideToken0123"
QUERY_TOKEN = "plantedQueryToken0123"
# Each in a shape that `redact` once let through (a fragment, a quoted value, `code=`, a
# bearer token, a label whose key names a secret, `token=` in a label's text).
LABEL_TOKENS = {
    "frag": ("'https://h/cb#access_token=plantedFragment0123'", "plantedFragment0123"),
    "quoted": ("'https://h/x?token=\"plantedQuoted0123\"'", "plantedQuoted0123"),
    "oauth": ("'https://h/cb?code=plantedCode0123'", "plantedCode0123"),
    "header": ("'Authorization: Bearer plantedBearer0123'", "plantedBearer0123"),
    "password": ("plantedPassword0123", "plantedPassword0123"),
    "api_key": ("plantedApiKey0123", "plantedApiKey0123"),
    "note": ("'token=plantedNote0123'", "plantedNote0123"),
    "slash": ("'https://u:pa/ss_plantedSlash0123@h/x'", "plantedSlash0123"),
    "xkey": ("'X-Api-Key: plantedXKey0123'", "plantedXKey0123"),
    "flag": ("'--password plantedFlag0123'", "plantedFlag0123"),
    "curl": ("'curl -u me:plantedCurl0123 https://h'", "plantedCurl0123"),
    "dash": ("'--api-key=plantedDash0123'", "plantedDash0123"),
    "bare": ("'me:plantedBare0123@db.example.com:5432'", "plantedBare0123"),
}
LABELS = [f"+meta.{key}={value}" for key, (value, _) in LABEL_TOKENS.items()]
NEW_TOKENS = [token for _, token in LABEL_TOKENS.values()]


def plant_vcs_install(site: os.PathLike) -> None:
    """A distribution installed from a private git URL, as pip records it."""
    dist_info = site / "planted_pkg-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: planted-pkg\nVersion: 1.0\n")
    (dist_info / "direct_url.json").write_text(
        json.dumps(
            {
                "url": f"git+https://builder:{VCS_TOKEN}@git.example.com/lab/planted.git",
                "vcs_info": {"vcs": "git", "commit_id": "0123abcd"},
            }
        )
    )


def plant_git_remote(repo: os.PathLike) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("remote", "add", "origin", f"https://oauth2:{REMOTE_TOKEN}@gitlab.example.com/lab/x.git")
    (repo / "study.txt").write_text("a study\n")
    git("add", "study.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")


@pytest.mark.slow
def test_planted_tokens_appear_in_no_written_file(tmp_path, mnist_data_dir):
    plant_vcs_install(tmp_path / "site")
    plant_git_remote(tmp_path)
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
        "GITHUB_TOKEN": ENV_TOKEN,
        "AWS_SECRET_ACCESS_KEY": ENV_TOKEN,
        "AEFF_TEST_API_KEY": ENV_TOKEN,
    }
    out = run_aeff(
        [
            "max_steps=20",
            f"+meta.data_source=https://reader:p@ss_{OVERRIDE_TOKEN}@data.example.com/mnist",
            f"+meta.signed='https://data.example.com/x?token={QUERY_TOKEN}'",
            *LABELS,
            *data_overrides(mnist_data_dir),
        ],
        tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for token in (ENV_TOKEN, OVERRIDE_TOKEN, QUERY_TOKEN, *NEW_TOKENS):
        assert token not in out.stdout + out.stderr
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    packages = (run_dir / "packages.txt").read_text()
    assert "planted-pkg @ git+https://***@git.example.com/lab/planted.git" in packages
    metadata = json.loads((run_dir / "metadata.json").read_text())
    # the git repo was seen, and its commit hash, like a sha256, is no secret
    assert metadata["cwd_git_commit_hash"] == git_head(tmp_path)
    assert metadata["meta.data_source"] == "https://***@data.example.com/mnist"
    assert metadata["meta.signed"] == "https://data.example.com/x?token=***"
    assert metadata["meta.password"] == metadata["meta.api_key"] == "***"
    assert metadata["meta.header"] == "Authorization: ***"
    assert metadata["meta.frag"] == "https://h/cb#access_token=***"

    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"metadata.json", "packages.txt", "metrics.csv", "config_resolved.yaml", "aeff.log"} <= {
        p.name for p in written
    }
    for path in written:
        text = path.read_bytes().decode(errors="replace")
        for token in (VCS_TOKEN, REMOTE_TOKEN, ENV_TOKEN, OVERRIDE_TOKEN, QUERY_TOKEN, *NEW_TOKENS):
            assert token not in text, f"{token} in {path}"  # .hydra/ included
    yaml.safe_load((run_dir / "config_resolved.yaml").read_text())  # masked, still YAML


def git_head(repo: os.PathLike) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_a_sweep_writes_and_prints_no_planted_token(tmp_path, mnist_data_dir):
    url = f"'https://reader:p@ss_{OVERRIDE_TOKEN}@data.example.com/x?sig={QUERY_TOKEN}'"
    out = run_aeff(
        [
            "-m",
            "hparams.lr=1e-3,2e-3",
            "debug=short",
            f"+meta.source={url}",
            *LABELS,
            *data_overrides(mnist_data_dir),
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    written = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert {"multirun.yaml", "sweep_plan.json", "overrides.yaml", "summary.csv"} <= {
        p.name for p in written
    }
    for text in [
        out.stdout + out.stderr,
        *(p.read_bytes().decode(errors="replace") for p in written),
    ]:
        for token in (OVERRIDE_TOKEN, QUERY_TOKEN, *NEW_TOKENS):
            assert token not in text


def test_a_refused_command_line_prints_no_planted_token(monkeypatch, capsys):
    """The one line of bad input names the value, credentials redacted."""
    url = f"https://reader:{OVERRIDE_TOKEN}@files.example.com/mine.py?sig={QUERY_TOKEN}"
    monkeypatch.setattr("sys.argv", ["aeff", f"submission_path={url}"])
    with pytest.raises(SystemExit) as exit:
        app.main()
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("aeff: submission_path=https:/***@files.example.com/mine.py?sig=***")
    assert OVERRIDE_TOKEN not in err and QUERY_TOKEN not in err


@pytest.mark.slow
def test_a_label_that_reads_an_environment_variable_is_refused(tmp_path):
    """Labels are recorded everywhere and environment variables nowhere: refused, in one
    line naming the label, before anything is written."""
    label = "+meta.tok=${oc.env:AWS_SECRET_ACCESS_KEY}"
    out = run_aeff([label, "hydra.run.dir=run"], tmp_path, env={"AWS_SECRET_ACCESS_KEY": ENV_TOKEN})
    assert out.returncode == 2, out.stderr[-3000:]
    assert ENV_TOKEN not in out.stdout + out.stderr
    assert "meta.tok=${oc.env:AWS_SECRET_ACCESS_KEY} reads an environment variable" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("argv", "token", "shown"),
    [
        (
            [f"hparams.lrr=https://u:{OVERRIDE_TOKEN}@h"],
            OVERRIDE_TOKEN,
            "To append to your config use +hparams.lrr=https://***@h",
        ),
        (  # `#` unquoted: Hydra's lexer refuses it, printing the override
            [f"+meta.frag=https://h/cb#access_token={QUERY_TOKEN}"],
            QUERY_TOKEN,
            "+meta.frag=https://h/cb#access_token=***",
        ),
        (["--cfg", "job", "+meta.password=plantedPassword0123"], "plantedPassword0123", "***"),
        (["--cfg", "hydra", "+meta.api_key=plantedApiKey0123"], "plantedApiKey0123", "***"),
    ],
)
def test_what_hydra_prints_itself_holds_no_planted_token(monkeypatch, capsys, argv, token, shown):
    """Hydra's refusals of an override and its `--cfg` output are written to the console
    by Hydra itself, not logged."""
    monkeypatch.setattr("sys.argv", ["aeff", *argv])
    refused = "--cfg" not in argv
    with pytest.raises(SystemExit) if refused else contextlib.nullcontext():
        app.main()
    out = capsys.readouterr()
    assert token not in out.out + out.err
    assert shown in (out.err if refused else out.out)


NOTE_TOKEN = "plantedMessageToken0123"


def test_cfg_job_resolve_prints_no_secret_environment_variable(monkeypatch, capsys):
    """`--cfg job --resolve` prints a label's `${oc.env:...}` resolved: the value of a
    variable whose name says it is secret is masked (the environment is read as the
    process starts, as `python -m aeff` does)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_TOKEN)
    monkeypatch.setattr(secrets, "ENVIRONMENT_SECRETS", secrets.environment_secrets(os.environ))
    label = "+meta.tok=${oc.env:AWS_SECRET_ACCESS_KEY}"
    monkeypatch.setattr("sys.argv", ["aeff", "--cfg", "job", "--resolve", label])
    app.main()
    out = capsys.readouterr()
    assert ENV_TOKEN not in out.out + out.err
    assert "  tok: ***\n" in out.out


CRASHING = f"""
from aeff.submissions.adam import Adam

class Crashing(Adam):
    @staticmethod
    def optimizer(hparams):
        raise RuntimeError(
            "cannot fetch https://reader:{OVERRIDE_TOKEN}@x.example.com/w?token={QUERY_TOKEN}"
            " (token={NOTE_TOKEN})"
            " (X-Api-Key: {NOTE_TOKEN}; curl -u me:{NOTE_TOKEN};"
            " me:{NOTE_TOKEN}@db.example.com:5432)"
        )
"""


@pytest.mark.slow
def test_a_crashed_trial_prints_its_traceback_without_a_planted_token(tmp_path, mnist_data_dir):
    """A crash is one redacted log line and its traceback, exit 1 (Hydra's own report
    printed the overrides and the error's message as they were)."""
    (tmp_path / "crashing.py").write_text(CRASHING)
    url = f"'https://reader:{OVERRIDE_TOKEN}@data.example.com/x?sig={QUERY_TOKEN}'"
    args = ["submission_path=crashing.py", f"+meta.source={url}", "hydra.run.dir=run"]
    out = run_aeff([*args, *data_overrides(mnist_data_dir)], tmp_path)
    assert out.returncode == 1
    assert "The trial failed (its record: " in out.stdout
    assert 'crashing.py", line 7, in optimizer' in out.stdout  # the traceback, to the user's line
    message = (
        "cannot fetch https://***@x.example.com/w?token=*** (token=***)"
        " (X-Api-Key: '***'; curl -u me:***; me:***@db.example.com:5432)"
    )
    assert f"RuntimeError: {message}" in out.stdout
    record = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert record["status"] == "failed" and record["error_type"] == "RuntimeError"
    assert record["error_message"] == message
    # a sha256 is no secret: the user file's, whole (the file itself holds the tokens)
    sha256 = hashlib.sha256((tmp_path / "crashing.py").read_bytes()).hexdigest()
    assert record["submission_path_sha256"] == sha256
    for text in [
        out.stdout + out.stderr,
        *(p.read_bytes().decode(errors="replace") for p in (tmp_path / "run").rglob("*.*")),
    ]:
        for token in (OVERRIDE_TOKEN, QUERY_TOKEN, NOTE_TOKEN):
            assert token not in text


def test_a_log_records_traceback_is_redacted_as_it_is_made():
    """Made redacted, and without the exception itself, which a handler could render."""
    redact_log_records()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("aeff.test_secrets")
    logger.addHandler(handler)
    try:
        raise RuntimeError(f"cannot fetch https://reader:{OVERRIDE_TOKEN}@x.example.com/w")
    except RuntimeError:
        logger.exception("fetching")
    finally:
        logger.removeHandler(handler)
    (record,) = records
    assert record.exc_info is None and OVERRIDE_TOKEN not in record.exc_text
    assert record.exc_text.endswith("RuntimeError: cannot fetch https://***@x.example.com/w")
