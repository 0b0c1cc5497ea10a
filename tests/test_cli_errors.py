"""A user's mistake on the command line gets one line on stderr and exit status 2, no traceback.

The real scripts run as subprocesses, as a user runs them; every case fails while the
arguments, the config or the input files are checked, before any Ray job or trial starts
(the jobs/ scripts even before torch is imported, so each of those costs well under a second).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "empty input folder": ("jobs/prepare_data.py", ["--input", "{tmp}/empty"],
                           "folder '{tmp}/empty' holds no data files; expected one of .csv, .json"),
    "missing input file": ("jobs/prepare_data.py", ["--input", "{tmp}/nope.jsonl"],
                           "input '{tmp}/nope.jsonl' is neither a file nor a folder."),
    "CP949 file": ("jobs/prepare_data.py", ["--input", "{tmp}/legacy.csv"],
                   "{tmp}/legacy.csv looks like CP949 (EUC-KR): re-save it as UTF-8 or pass --encoding cp949"),
    "unknown encoding": ("jobs/prepare_data.py", ["--encoding", "klingon"],
                         "data.encoding='klingon' is not a text encoding; use e.g. 'utf-8' or 'cp949'."),
    "bad config value": ("jobs/prepare_data.py", ["--set", "data.max_source_length=-1"],
                         "data.max_source_length=-1 must be > 0."),
    "unknown --set key": ("jobs/train.py", ["--set", "data.colour=red"],
                          "unknown config key(s) ['data.colour']; allowed under 'data.': ['source',"),
    "--set without =": ("jobs/train.py", ["--set", "training.lr"],
                        "override 'training.lr' must look like key=value"),
    "missing config file": ("jobs/train.py", ["--config", "{tmp}/nope.yaml"],
                            "config file '{tmp}/nope.yaml' does not exist."),
    "config file not YAML": ("jobs/train.py", ["--config", "{tmp}/broken.yaml"],
                             "config file '{tmp}/broken.yaml' is not valid YAML at line 3, column 14: "
                             "mapping values are not allowed here."),
    "non-numeric task weight": ("jobs/train.py", ["--set", "data.sampling_weights={{style_transfer: x}}"],
                                "data.sampling_weights['style_transfer']='x' must be a number."),
    "bad value in the demo": ("jobs/demo.py", ["--set", "training.max_steps=0"],
                              "training.max_steps=0 must be > 0."),
    "unknown key in a sweep space": ("tune/sweep.py", ["--space", "{tmp}/space.yaml"],
                                     "{tmp}/space.yaml: training.colour"),
    "bad sweep setting": ("tune/sweep.py", ["--num-samples", "0"], "sweep num_samples=0 must be >= 1."),
    "unknown encoding in evaluate": ("jobs/evaluate.py", ["--model", "m", "--data", "d", "--encoding", "x"],
                                     "--encoding='x' is not a text encoding"),
    "bad decoding setting": ("jobs/evaluate.py", ["--model", "m", "--data", "d", "--num-beams", "0"],
                             "num_beams=0 must both be >= 1."),
}


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The files the cases name: an empty folder, a CP949 CSV, a config that is not YAML."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "legacy.csv").write_bytes("task,input,target\nstyle_transfer,안녕하세요,안녕\n".encode("cp949"))
    (tmp_path / "broken.yaml").write_text("training:\n  lr: 1\n   batch_size: 2\n", encoding="utf-8")
    (tmp_path / "space.yaml").write_text("training.colour: {uniform: [1, 2]}\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_error_is_one_line_on_stderr_and_exit_status_2(inputs, case):
    script, args, message = CASES[case]
    result = subprocess.run([sys.executable, script, *[a.format(tmp=inputs) for a in args]],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    prog = script if script == "jobs/evaluate.py" else Path(script).name
    assert lines[0].startswith(f"{prog}: error: ")
    assert message.format(tmp=inputs) in lines[0]
