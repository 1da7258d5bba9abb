"""`ias serve --strategy`: OpenAI requests answered by a test-time scaling method, on
loopback with the zoo policy and PRM, through the official `openai` client."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from ias.methods import make_method
from ias.methods.base import Question
from ias.methods.engine import run_method
from ias.methods.sources import LiveSource
from ias.serve import make_server
from ias.serve.limits import ServeLimits
from ias.tasks.base import get_task
from ias.types import Problem

from loopback import call, running


class CountingPolicy:
    """The zoo policy, counting its calls and the samples it returns."""

    def __init__(self, policy):
        self.inner, self.calls, self.samples = policy, 0, 0
        self.name, self.defaults = policy.name, policy.defaults

    def sample(self, prompts, n, params, seeds, first=None):
        self.calls += 1
        out = self.inner.sample(prompts, n, params, seeds, first)
        self.samples += sum(len(group) for group in out)
        return out


def serving(policy, prm, strategy="ias-adaptive", settings=None, **limits):
    server = make_server(
        policy,
        "arith-weak",
        port=0,
        strategy=strategy,
        prm=prm,
        settings=settings if settings is not None else {"n_max": 8},
        limits=ServeLimits(access_log=False, **limits),
    )
    return running(server)


def test_the_openai_client_gets_the_methods_answer_its_confidence_and_every_tokens_usage(zoo_policy, zoo_prm):
    with serving(zoo_policy, zoo_prm, api_key="K") as server:
        client = openai.OpenAI(base_url=server.url, api_key="K", max_retries=0)
        reply = client.chat.completions.create(
            model="arith-weak", seed=7, messages=[{"role": "user", "content": "Compute 12+30."}]
        )
        block = reply.model_extra["ias"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).chat.completions.create(
                model="arith-weak", messages=[{"role": "user", "content": "Compute 1+1."}]
            )
    # The same question and seed solved by the same method in-process: the same answer and spend.
    task = get_task("arith")
    method = make_method("ias-adaptive", n_max=8)
    [answer] = run_method(
        method,
        [Question(Problem("seed-7", "Compute 12+30.", ""), task.extract)],
        LiveSource(task, zoo_policy, zoo_prm, zoo_policy.defaults, 0, grade=False),
    )
    assert reply.choices[0].message.content == answer.text
    assert block["answer"] == answer.answer and block["strategy"] == "ias-adaptive"
    assert block["confidence"] == pytest.approx(answer.confidence, abs=1e-6) and 0 <= block["confidence"] <= 1
    assert block["samples"] == answer.n_samples == len(block["waves"]) or block["samples"] >= len(block["waves"])
    assert reply.usage.completion_tokens == answer.generated_tokens == block["generated_tokens"]
    assert reply.usage.prompt_tokens == answer.prompt_tokens
    assert reply.usage.model_extra["ias"] == {"prm_tokens": answer.prm_tokens, "samples": answer.n_samples}


def test_a_requests_ias_block_overrides_within_the_operators_caps(zoo_policy, zoo_prm):
    with serving(zoo_policy, zoo_prm, max_n=16) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        fixed = client.completions.create(
            model="arith-weak", prompt="Compute 3*4+5.", seed=1, extra_body={"ias": {"strategy": "bon", "budget": 5}}
        )
        assert fixed.model_extra["ias"]["samples"] == 5 and fixed.model_extra["ias"]["strategy"] == "bon"
        assert len(fixed.choices) == 1
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "ias": {"n_max": 64}})
        assert status == 400 and body["error"]["param"] == "ias.n_max" and "--max-n 16" in body["error"]["message"]
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "ias": {"strategy": "esc", "coverage": 0.9}})
        assert status == 400 and body["error"]["param"] == "ias.coverage"
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "ias": {"strategy": "best-of"}})
        assert status == 400 and "unknown strategy 'best-of'" in body["error"]["message"]
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "ias": {"speed": 3}})
        assert status == 400 and "unknown field `ias.speed`" in body["error"]["message"]
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "temperature": 0.2})
        assert status == 400 and body["error"]["param"] == "temperature"
        status, body, _ = call(server.url, {"prompt": ["Compute 1+1.", "Compute 2+2."]})
        assert status == 400 and body["error"]["param"] == "prompt"
        status, body, _ = call(server.url, {"messages": [{"role": "system", "content": "x"}]}, path="/chat/completions")
        assert status == 400 and body["error"]["param"] == "messages"


def test_a_request_picks_a_mean_budget_of_the_servers_tuning_file(zoo_policy, zoo_prm, tmp_path):
    """`ias.strategy: ias-adaptive@B` answers with the tuning file's setting for that budget."""
    one = {"target": 0.9, "price": 1.0, "wave": 1, "prior": 1.0, "growth": 2.0}  # any sample's gain is below its price
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps({"adaptive": {"settings": {**one, "price": 0.0}, "by_budget": {"1": one}}}))
    server = make_server(zoo_policy, "arith-weak", port=0, strategy="ias-adaptive", prm=zoo_prm, tuning=tuning)
    with running(server) as server:
        status, body, _ = call(server.url, {"prompt": "Compute 38*9*2+41-42.", "ias": {"strategy": "ias-adaptive@1"}})
        assert status == 200 and body["ias"]["strategy"] == "ias-adaptive@1" and body["ias"]["samples"] == 1
        status, body, _ = call(server.url, {"prompt": "Compute 38*9*2+41-42.", "seed": 3})
        assert status == 200 and body["ias"]["strategy"] == "ias-adaptive" and body["ias"]["samples"] > 1
        status, body, _ = call(server.url, {"prompt": "Compute 1+1.", "ias": {"strategy": "ias-adaptive@8"}})
        assert status == 400 and body["error"]["param"] == "ias.strategy"
        assert "it holds: ias-adaptive, ias-adaptive@1" in body["error"]["message"]


def test_concurrent_questions_share_the_models_calls(zoo_policy, zoo_prm):
    """16 concurrent questions' waves are batched: far fewer policy calls than waves."""
    counting = CountingPolicy(zoo_policy)
    with serving(counting, zoo_prm, settings={"n_max": 8, "price": 0.0}) as server:

        def ask(k: int) -> dict:
            return call(server.url, {"prompt": f"Compute {k}*{k + 3}-{k}.", "seed": k})[1]

        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(ask, range(16)))
    waves = sum(len(r["ias"]["waves"]) for r in replies)
    assert all(r["usage"]["ias"]["samples"] >= 1 for r in replies)
    assert counting.samples == sum(r["usage"]["ias"]["samples"] for r in replies)  # nothing drawn unreported
    assert waves > 16 and counting.calls < waves / 2


def test_a_stream_sends_each_wave_then_the_answer(zoo_policy, zoo_prm):
    with serving(zoo_policy, zoo_prm, settings={"n_max": 6, "price": 0.0, "target": 0.999}) as server:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="arith-weak",
                stream=True,
                stream_options={"include_usage": True},
                seed=2,
                messages=[{"role": "user", "content": "Compute 7*8-9."}],
            )
        )
    waves = [c for c in chunks if not c.choices and c.usage is None]
    [final] = [c for c in chunks if c.choices]
    assert len(waves) == len(final.model_extra["ias"]["waves"]) >= 2
    assert [len(w.model_extra["ias"]["waves"]) for w in waves] == list(range(1, len(waves) + 1))
    assert final.choices[0].delta.content and 0 <= final.model_extra["ias"]["confidence"] <= 1
    assert chunks[-1].usage.completion_tokens == final.model_extra["ias"]["generated_tokens"]


def test_a_bad_question_fails_alone(zoo_policy, zoo_prm):
    """A question longer than the policy's context fails its own request (400); a question
    asked at the same time is answered."""
    with serving(zoo_policy, zoo_prm) as server:
        long_question = "Compute " + "+".join(["1"] * 3000) + "."
        with ThreadPoolExecutor(2) as pool:
            bad = pool.submit(call, server.url, {"prompt": long_question})
            time.sleep(0.05)
            good = pool.submit(call, server.url, {"prompt": "Compute 2+2."})
            (bad_status, bad_body, _), (good_status, good_body, _) = bad.result(), good.result()
    assert bad_status == 400 and "tokens" in bad_body["error"]["message"]
    assert good_status == 200 and good_body["ias"]["samples"] >= 1
    assert json.dumps(good_body)  # a plain JSON answer


def test_ias_serve_with_a_strategy_from_the_command_line(tmp_path):
    """`ias serve --prm --strategy --api-key` as a process: the openai client with the key gets
    an answer with its confidence; without it, 401; SIGTERM stops it cleanly."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ias.cli",
            "serve",
            "--policy",
            "arith-weak",
            "--prm",
            "arith-prm",
            "--strategy",
            "ias-adaptive",
            "--n-max",
            "8",
            "--api-key",
            "K",
            "--port",
            "0",
            "--no-access-log",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "answering with ias-adaptive" in line
        url = line.split()[-1]
        reply = openai.OpenAI(base_url=url, api_key="K", max_retries=0).chat.completions.create(
            model="arith-weak", messages=[{"role": "user", "content": "Compute 6*7."}]
        )
        assert 0 <= reply.model_extra["ias"]["confidence"] <= 1 and reply.model_extra["ias"]["samples"] <= 8
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="other", max_retries=0).chat.completions.create(
                model="arith-weak", messages=[{"role": "user", "content": "Compute 6*7."}]
            )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_client_that_leaves_frees_its_questions_work(zoo_policy, zoo_prm):
    """A client gone mid-answer: its question leaves the engine within a step, nothing more
    is drawn for it, and the cancellation is counted."""
    import socket

    counting = CountingPolicy(zoo_policy)
    with serving(counting, zoo_prm, settings={"n_max": 64, "price": 0.0, "target": 1.0, "growth": 1.0}) as server:
        body = json.dumps({"prompt": "Compute 59+89+83.", "seed": 4}).encode()
        host, port = server.url.split("//")[1].split("/")[0].split(":")
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            deadline = time.monotonic() + 30
            while counting.samples < 2 and time.monotonic() < deadline:  # under way: a few waves drawn
                time.sleep(0.01)
        deadline = time.monotonic() + 30
        while server.state.depth > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.state.depth == 0 and not server.state.reasoning.engine.busy
        drawn = counting.samples
        time.sleep(0.5)
        assert counting.samples == drawn < 64  # nothing more was drawn for it
        assert server.state.metrics.cancelled == 1
