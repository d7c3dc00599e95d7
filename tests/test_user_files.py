"""A submission, a workload and a search space from the researcher's own files.

The files are the ones docs/writing-a-submission.md shows, taken from it, so the doc
stays true.
"""

import hashlib
import json
import pickle
import re
import sys
from pathlib import Path

import pytest
from helpers import HELPERS, REPO, data_overrides, run_aeff

from aeff.cli.app import compose_config
from aeff.config import check_trial, class_in_file
from aeff.errors import ConfigError, TrialExited
from aeff.records import sweep_dir as sweep_record
from aeff.submissions.adam import AdamHParams
from aeff.submissions.nesterov import NesterovHParams
from aeff.training.prepare import refuse_unused_hparams
from aeff.trial import train_and_evaluate
from aeff.user_files import read_search_space

DOC = REPO / "docs" / "writing-a-submission.md"
BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", re.DOTALL)


@pytest.fixture
def doc_files(tmp_path) -> Path:
    """The doc's example files, written into an empty folder as a reader would."""
    for name, text in BLOCK.findall(DOC.read_text()):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def short(mnist_data_dir, *overrides):
    return compose_config(
        [
            *data_overrides(mnist_data_dir),
            "max_steps=40",
            "eval_every_steps=20",
            "rng_seed=0",
            "logging.packages=false",
            "logging.system_metrics=false",
            *overrides,
        ]
    )


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_the_docs_submission_trains_with_its_own_hparams_and_is_recorded(
    doc_files, mnist_data_dir, tmp_path
):
    source = doc_files / "my_sgd.py"
    overrides = ["hparams.momentum=0.95", "submission.warmup_steps=10"]
    cfg = short(mnist_data_dir, f"submission_path={source}", *overrides)
    result = train_and_evaluate(cfg, tmp_path / "run")
    assert result.final_metrics["validation.accuracy"] > 0.85  # 40 steps learn MNIST
    record = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert record["hparams.momentum"] == 0.95 and record["hparams.lr"] == 0.1
    assert record["submission._target_"].endswith(".SgdWithWarmup")
    assert record["submission.warmup_steps"] == 10
    assert record["submission_path"] == str(source.resolve())
    assert record["submission_path_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (tmp_path / "run" / "submission.py").read_bytes() == source.read_bytes()


@pytest.mark.slow  # its own model's programs compile: 8 s
def test_the_docs_workload_trains_with_its_own_model(doc_files, mnist_data_dir, tmp_path):
    source = doc_files / "deeper_mnist.py"
    cfg = short(mnist_data_dir, f"workload_path={source}", "workload.hidden_width=64")
    trial = check_trial(cfg)
    assert type(trial.workload).__name__ == "DeeperMnist" and trial.workload.hidden_width == 64
    assert trial.workload.target_value == 0.975  # the file's default
    result = train_and_evaluate(cfg, tmp_path / "run")
    assert result.final_metrics["validation.accuracy"] > 0.85
    assert (tmp_path / "run" / "workload.py").read_bytes() == source.read_bytes()


def test_its_hparams_are_checked_by_its_schema(doc_files, mnist_data_dir):
    source = doc_files / "my_sgd.py"
    with pytest.raises(ConfigError, match=r"hparams\.momentum"):
        check_trial(short(mnist_data_dir, f"submission_path={source}", "hparams.momentum=1.5"))
    with pytest.raises(ConfigError, match=r"hparams\.lrr.*lr, momentum"):
        check_trial(short(mnist_data_dir, f"submission_path={source}", "+hparams.lrr=0.1"))


HEADER = "import dataclasses\nfrom aeff.submissions.optax_submission import OptaxSubmission\n"
SGD = "@dataclasses.dataclass(frozen=True)\nclass {name}(OptaxSubmission):\n{body}\n"
COMPLETE = "    hparams_schema = dict\n    def optimizer(self, hparams): ...\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"no such file"),
        ("import no_such_module\n", r"does not import: ModuleNotFoundError: .*no_such_module"),
        ("import sys\nsys.exit(0)\n", r"does not import: SystemExit: 0"),  # not a silent exit 0
        (
            "x = 1\n",
            r"defines no submission: neither a subclass of aeff's Submission nor AlgoPerf's",
        ),
        (SGD.format(name="Half", body="    pass"), r"Half lacks optimizer"),
        (
            SGD.format(name="One", body=COMPLETE) + SGD.format(name="Two", body=COMPLETE),
            r"defines 2 Submissions \(One, Two\): keep one",
        ),
        (SGD.format(name="Bad", body=COMPLETE), r"Bad.hparams_schema must name a dataclass"),
    ],
)
def test_a_bad_submission_file_is_refused_naming_it(tmp_path, text, message):
    path = tmp_path / "mine.py"
    if text is not None:
        path.write_text(HEADER + text)
    with pytest.raises(ConfigError, match=rf"submission_path={re.escape(str(path))}.*{message}"):
        class_in_file(path, "submission_path", "submission")


def test_a_file_that_is_not_python_is_refused_naming_it(tmp_path):
    path = tmp_path / "mine.txt"  # Python's import machinery would find no loader for it
    path.write_text(HEADER + SGD.format(name="Mine", body=COMPLETE))
    with pytest.raises(ConfigError, match=rf"submission_path={re.escape(str(path))} is not a"):
        class_in_file(path, "submission_path", "submission")


def test_a_submission_that_calls_sys_exit_is_a_failed_trial_not_the_end(tmp_path, mnist_data_dir):
    source = tmp_path / "exiting.py"
    source.write_text(
        "import dataclasses, sys\n"
        "from aeff.submissions.adam import Adam\n\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class ExitingAdam(Adam):\n"
        "    @staticmethod\n"
        "    def optimizer(hparams):\n"
        "        sys.exit(0)\n"
    )
    cfg = short(mnist_data_dir, f"submission_path={source}")
    with pytest.raises(TrialExited, match=r"called sys.exit\(0\)") as exited:  # not SystemExit
        train_and_evaluate(cfg, tmp_path / "run")
    handed_back = pickle.loads(pickle.dumps(exited.value))  # as a parallel launcher's worker
    assert str(handed_back) == str(exited.value) and handed_back.code == 0
    record = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert record["status"] == "failed" and record["error_type"] == "TrialExited"
    assert 'exiting.py", line 8, in optimizer' in record["traceback"]


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_sys_exit_after_the_records_began_is_recorded_as_the_trial_s_crash(
    tmp_path, mnist_data_dir, monkeypatch
):
    def exiting_training(*args, **kwargs):
        sys.exit(0)  # as a training loop calling the user's code on the host would

    monkeypatch.setattr("aeff.training.loop.Loop.run", exiting_training)
    with pytest.raises(TrialExited):
        train_and_evaluate(short(mnist_data_dir), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert record["status"] == "failed" and record["error_type"] == "TrialExited"
    assert "start_time" in record  # its records had begun


@pytest.mark.slow  # trains whole trials; the fast tier keeps the rules' own tests
def test_a_file_edited_after_it_was_read_is_recorded_and_copied_as_it_ran(
    doc_files, mnist_data_dir, tmp_path
):
    """A sweep's process reads the file once: a trial after an edit runs, hashes and copies
    those bytes, not the edited file."""
    source = doc_files / "my_sgd.py"
    ran = source.read_bytes()
    cfg = short(mnist_data_dir, f"submission_path={source}")  # composing imports it
    source.write_text("raise RuntimeError('the edited file')\n")
    result = train_and_evaluate(cfg, tmp_path / "run")
    assert result.final_metrics["validation.accuracy"] > 0.5  # trained by the code read
    record = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert record["submission_path_sha256"] == hashlib.sha256(ran).hexdigest()
    assert (tmp_path / "run" / "submission.py").read_bytes() == ran


def test_a_space_edited_after_the_sweep_read_it_is_recorded_as_it_was_read(
    doc_files, mnist_data_dir
):
    space = doc_files / "space.json"
    read = space.read_bytes()
    planned = read_search_space(space)  # the sweeper, planning
    space.write_text('{"learning_rate": {"min": 5, "max": 9, "scaling": "log"}}')
    assert read_search_space(space) == planned
    trial = check_trial(short(mnist_data_dir, f"tuning_search_space={space}"))
    assert trial.record["tuning_search_space_sha256"] == hashlib.sha256(read).hexdigest()


def test_a_space_file_missing_or_not_text_is_refused_naming_it(tmp_path):
    missing, binary = tmp_path / "none.json", tmp_path / "space.json"
    with pytest.raises(ConfigError) as refused:
        read_search_space(missing)
    assert str(refused.value) == f"tuning_search_space={missing}: No such file or directory."
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match=rf"tuning_search_space={binary} is not text"):
        read_search_space(binary)


def test_a_sweeps_trial_reading_a_file_edited_since_the_plan_fails_naming_it(
    doc_files, mnist_data_dir, tmp_path
):
    """A parallel worker that first reads the file after an edit: its trial is refused,
    not run beside trials of the planned code."""
    source, sweep_dir = doc_files / "my_sgd.py", tmp_path / "sweep"
    planned = hashlib.sha256(source.read_bytes()).hexdigest()
    sweep_dir.mkdir()
    sweep_record.write_plan(sweep_dir, [[f"submission_path={source}"]], {str(source): planned})
    source.write_text(source.read_text() + "# edited\n")
    now = hashlib.sha256(source.read_bytes()).hexdigest()
    cfg = short(mnist_data_dir, f"submission_path={source}")
    labels = {"sweep_dir": str(sweep_dir), "hydra.job.num": 0}
    message = (
        f"submission_path={source} changed since the sweep in {sweep_dir} was planned "
        f"(sha256 {planned[:12]}, now {now[:12]}): restore the planned file, then resume "
        "the sweep."
    )
    with pytest.raises(ConfigError) as refused:
        train_and_evaluate(cfg, sweep_dir / "0", labels, record_bad_input=True)
    assert str(refused.value) == message
    record = json.loads((sweep_dir / "0" / "metadata.json").read_text())
    assert record["status"] == "failed" and record["error_message"] == message


@pytest.mark.slow
def test_the_docs_hydra_way_trains_the_submission_as_a_config_group(doc_files, mnist_data_dir):
    """The page's own commands run in tests/test_doc_commands.py; its Hydra way, described in
    prose (`--config-dir ./conf submission=my_sgd`), runs here."""
    data = data_overrides(mnist_data_dir)
    hydra_way = ["--config-dir", "./conf", "submission=my_sgd", "max_steps=30", *data]
    out = run_aeff(hydra_way, doc_files)
    assert out.returncode == 0, out.stderr[-3000:]


PLAIN_SGD = HELPERS / "plain_sgd.py"


@pytest.mark.parametrize("value", ["hparams.lr=0.5", "hparams.nesterov=true"])
def test_a_hparam_that_never_reaches_the_optimizer_is_refused_before_the_data(
    tmp_path, mnist_data_dir, monkeypatch, value
):
    """`optax.sgd(hparams.lr)` without `inject_hyperparams`: the steps would train with the
    default while the records said 0.5. Refused naming the key and the file, before the
    data loads, leaving no files."""

    def no_data(workload):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr("aeff.training.prepare.load_splits", no_data)
    cfg = short(mnist_data_dir, f"submission_path={PLAIN_SGD}", value)
    key = value.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}=.*{PLAIN_SGD}.*inject_hyperparams") as refused:
        train_and_evaluate(cfg, tmp_path / "run")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # trains a trial: 3 s
def test_a_submission_without_injected_hparams_trains_at_its_defaults(tmp_path, mnist_data_dir):
    cfg = short(mnist_data_dir, f"submission_path={PLAIN_SGD}")
    result = train_and_evaluate(cfg, tmp_path / "run")
    assert result.final_metrics["validation.accuracy"] > 0.85


@pytest.mark.parametrize(
    ("submission", "changed"),
    [
        ("adam", AdamHParams(lr=0.5, one_minus_beta_1=0.2, beta_2=0.9, epsilon=1e-3)),
        ("nesterov", NesterovHParams(lr=0.5, momentum=0.5)),
    ],
)
def test_every_hparam_of_the_built_in_submissions_reaches_the_state(
    mnist_data_dir, submission, changed
):
    trial = check_trial(short(mnist_data_dir, f"submission={submission}"))
    refuse_unused_hparams(trial.workload, trial.submission, changed)  # raises nothing


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (  # JSON keeps the last: lr=5.2 was sampled from the second
            "space.json",
            '{"learning_rate": {"min": 1e-4, "max": 1e-2}, "learning_rate": {"min": 1, "max": 9}}',
            r"space\.json gives the key 'learning_rate' twice: keep one\.$",
        ),
        (
            "space.json",
            '{"lr": {"min": 1e-4, "max": 1e-2, "max": 9}}',
            r"space\.json gives the key 'max' twice",
        ),
        (
            "space.yaml",
            "lr: {min: 1.0e-4, max: 1.0e-2}\nlr: {min: 1, max: 9}\n",
            r"space\.yaml gives the key 'lr' twice \(line 2\): keep one\.$",
        ),
        ("space.yaml", "lr: [1\n", r"space\.yaml is not valid JSON or YAML: while parsing"),
    ],
)
def test_a_search_space_file_with_a_key_twice_is_refused_naming_it(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^tuning_search_space=.*{message}") as refused:
        read_search_space(path)
    assert "\n" not in str(refused.value)


def test_a_yaml_search_space_reads_1e_5_as_the_number_it_is(tmp_path):
    """As Hydra reads conf/ (and JSON does), not as YAML 1.1's string: a space's numbers
    must be numbers, and `1e-5` is one."""
    path = tmp_path / "space.yaml"
    path.write_text("lr: {min: 1e-5, max: 1e-2, scale: log}\neps: {values: [1e-8, 3e-5]}\n")
    assert read_search_space(path) == {
        "hparams.lr": {"min": 1e-5, "max": 1e-2, "scale": "log"},
        "hparams.eps": {"values": [1e-8, 3e-5]},
    }
