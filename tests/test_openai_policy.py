"""The OpenAI-compatible backend against real servers on loopback: `ias serve` of the zoo
policy (a subprocess, and one in a thread for fault injection), and small http.servers
that behave like servers lacking a feature or too slow to answer."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ias.cli import main
from ias.errors import MissingExtraError, UserError
from ias.policy.base import SamplingParams, load_policy
from ias.policy.openai import split_total
from ias.serve import make_server

from loopback import running

PROMPTS = ["Compute 12+7*3.\n\n", "Compute 5-2.\n\n"]
FAST = {"backoff_s": 0.01}  # retries without long sleeps


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ias serve` of arith-weak on a free loopback port; yields its base URL."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ias.cli", "serve", "--policy", "arith-weak", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    try:
        line = proc.stdout.readline()  # "serving arith-weak at http://127.0.0.1:PORT/v1", once it listens
        assert line.startswith("serving arith-weak at "), (line, log.read_text())
        url = line.split()[-1]
        with urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=10) as response:
            assert response.status == 200
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    return load_policy("arith-weak", backend="openai", base_url=server, tokenizer="arith-weak", **FAST)


def send_json(handler: BaseHTTPRequestHandler, status: int, data: dict, headers: dict | None = None) -> None:
    """One JSON reply from a peer server (a plain http.server standing in for other servers)."""
    raw = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(raw)


def fake_server(answer):
    """A real http.server whose POSTs are answered by `answer(body) -> (status, payload[, headers])`;
    GETs are 404 (no /models, as some servers). `.bodies` keeps what it was sent."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            send_json(self, 404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.server.bodies.append(body)
            status, payload, *headers = answer(body)
            try:
                send_json(self, status, payload, *headers)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.bodies = []
    return running(httpd)


def url_of(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def test_samples_through_the_server_equal_the_hf_backends(client, zoo_policy, server):
    params = SamplingParams(temperature=1.0, max_tokens=80)
    want = zoo_policy.sample(PROMPTS, 2, params, [1, 2])
    assert client.sample(PROMPTS, 2, params, [1, 2]) == want
    # Without a tokenizer: counts from the server's usage, split by characters (exact for this char-level model).
    bare = load_policy("arith-weak", backend="openai", base_url=server, **FAST)
    assert bare.tokenizer is None
    assert bare.sample(PROMPTS, 2, params, [1, 2]) == want
    other = client.sample(PROMPTS[:1], 2, params, [3])
    assert [s.text for s in other[0]] != [s.text for s in want[0]]
    # Later samples alone: the server's stream starts at choice 0, the client keeps the last ones.
    assert client.sample(PROMPTS, 1, params, [1, 2], first=[1, 0]) == [want[0][1:], want[1][:1]]
    with pytest.raises(UserError, match="hf backend only"):  # a server cannot stop a sample on its confidence
        client.sample(PROMPTS, 1, dataclasses.replace(params, exit_below=-1.0), [1, 2])


def test_defaults_and_context_come_from_the_tokenizers_folder(client, zoo_policy):
    assert client.defaults == zoo_policy.defaults  # generation_config.json: temperature 1.3
    assert client.max_model_len == zoo_policy.max_model_len  # from the server's /v1/models
    assert client.tokenizer is not None and client.tokenizer.eos_token == zoo_policy.tokenizer.eos_token


def test_stop_strings_and_finish_reasons(client, zoo_policy):
    params = SamplingParams(temperature=1.0, max_tokens=80, stop=("\n\n",))
    got = client.sample(PROMPTS, 2, params, [5, 6])
    assert got == zoo_policy.sample(PROMPTS, 2, params, [5, 6])
    stopped = [s for group in got for s in group if s.finish_reason == "stop"]
    assert stopped and all(s.stop == "\n\n" and "\n\n" not in s.text for s in stopped)
    [[short]] = client.sample(PROMPTS[:1], 1, SamplingParams(max_tokens=5), [0])
    assert short.finish_reason == "length" and short.generated_tokens == 5


def test_logprobs_one_per_generated_token(client, zoo_policy):
    params = SamplingParams(temperature=1.0, max_tokens=80, logprobs=True)
    got, want = client.sample(PROMPTS, 2, params, [7, 8]), zoo_policy.sample(PROMPTS, 2, params, [7, 8])
    for a, b in zip([s for g in got for s in g], [s for g in want for s in g]):
        assert (a.text, a.generated_tokens, a.finish_reason) == (b.text, b.generated_tokens, b.finish_reason)
        assert len(a.logprobs) == a.generated_tokens
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_split_total_is_proportional_and_exact():
    assert split_total(10, [1, 1, 2]) == [3, 2, 5]
    assert split_total(7, [0, 0]) == [4, 3]
    assert sum(split_total(1001, [3, 17, 5, 0, 9])) == 1001


def test_retries_after_503_honour_retry_after(zoo_policy):
    with running(make_server(zoo_policy, "arith-weak", port=0, fail_first=2)) as httpd:
        policy = load_policy("arith-weak", backend="openai", base_url=httpd.url, max_retries=2, **FAST)
        started = time.monotonic()
        [[sample]] = policy.sample(PROMPTS[:1], 1, SamplingParams(max_tokens=20), [4])
        assert time.monotonic() - started >= 2.0  # two `Retry-After: 1`, not the 10 ms backoff
        assert httpd.completions == 3
        assert sample == zoo_policy.sample(PROMPTS[:1], 1, SamplingParams(max_tokens=20), [4])[0][0]
    with running(make_server(zoo_policy, "arith-weak", port=0, fail_first=5)) as httpd:
        policy = load_policy("arith-weak", backend="openai", base_url=httpd.url, max_retries=1, **FAST)
        with pytest.raises(UserError, match=r"answered 503 \(injected failure.*2 tries"):
            policy.sample(PROMPTS[:1], 1, SamplingParams(max_tokens=20), [4])
        assert httpd.completions == 2


def test_a_timeout_is_retried_then_a_clear_error():
    def slow(body):
        time.sleep(1.5)
        return 200, {}

    with fake_server(slow) as httpd:
        policy = load_policy("m", backend="openai", base_url=url_of(httpd), timeout_s=0.2, max_retries=1, **FAST)
        with pytest.raises(UserError, match=r"gave no answer within 0.2 s .*2 tries"):
            policy.sample(["q"], 1, SamplingParams(), [0])
        deadline = time.monotonic() + 10  # the server's thread may read the second body after the client gave up
        while len(httpd.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(httpd.bodies) == 2


def test_an_unreachable_server_is_a_user_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(UserError, match=rf"server at {url} could not be reached .*fix base_url"):
        load_policy("m", backend="openai", base_url=url, max_retries=1, **FAST)
    with pytest.raises(UserError, match="needs the server's address"):
        load_policy("m", backend="openai")


@pytest.mark.parametrize(
    "refusal, field",
    [
        ({"error": {"message": "Only one completion choice is allowed", "code": 400}}, "n"),  # llama.cpp style
        ({"error": {"message": "Unrecognized request argument supplied: stop", "param": None}}, "stop"),  # OpenAI
        ({"error": "logprobs is not supported by this model", "error_type": "validation"}, "logprobs"),  # TGI
    ],
)
def test_a_server_lacking_a_field_is_named(refusal, field):
    with fake_server(lambda body: (400, refusal)) as httpd:
        policy = load_policy("m", backend="openai", base_url=url_of(httpd), **FAST)
        params = SamplingParams(stop=("\n\n",), logprobs=True)
        with pytest.raises(UserError, match=rf"does not support `{field}`"):
            policy.sample(["q"], 4, params, [0])
        assert len(httpd.bodies) == 1  # a 400 is not retried


def test_a_server_ignoring_n_or_usage_is_caught():
    one_choice = {"choices": [{"index": 0, "text": "1+1=2", "finish_reason": "stop"}]}
    with fake_server(lambda body: (200, one_choice)) as httpd:
        policy = load_policy("m", backend="openai", base_url=url_of(httpd), **FAST)
        with pytest.raises(UserError, match=r"returned 1 choices for n=3: it does not support `n`"):
            policy.sample(["q"], 3, SamplingParams(), [0])
        with pytest.raises(UserError, match="reports no token usage; pass the model's tokenizer"):
            policy.sample(["q"], 1, SamplingParams(), [0])
        counted = load_policy("m", backend="openai", base_url=url_of(httpd), tokenizer="arith-weak", **FAST)
        [[sample]] = counted.sample(["q"], 1, SamplingParams(), [0])
        prompt_tokens = len(counted.tokenizer("q")["input_ids"])  # counted here: the server gave no usage
        assert (sample.prompt_tokens, sample.generated_tokens, sample.finish_reason) == (prompt_tokens, 6, "eos")


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({"model": "arith-weak", "prompt": "q", "best_of": 2}, 400, "best_of"),
        ({"model": "arith-weak", "prompt": "q", "n": 0}, 400, "n"),
        ({"model": "arith-weak", "prompt": "q", "temperature": -1}, 400, "temperature"),
        ({"model": "arith-weak", "prompt": "q", "logprobs": 5}, 400, "logprobs"),
        ({"model": "arith-weak", "prompt": 7}, 400, "prompt"),
        ({"model": "gpt-9", "prompt": "q"}, 404, "model"),
        ({"model": "arith-weak", "prompt": "q", "temperature": float("nan")}, 400, "temperature"),  # JSON NaN
        ({"model": "arith-weak", "prompt": "q", "top_p": float("nan")}, 400, "top_p"),
        ({"model": "arith-weak", "prompt": "q", "temperature": 10**400}, 400, "temperature"),
        ({"model": "arith-weak", "prompt": "q", "seed": 2**64}, 400, "seed"),
        ({"model": "arith-weak", "prompt": "q", "seed": -(2**63) - 1}, 400, "seed"),
    ],
)
def test_ias_serve_refuses_what_it_cannot_do(server, body, status, param):
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(server, json.dumps(body).encode())
    assert refused.value.code == status
    assert json.loads(refused.value.read())["error"]["param"] == param


def post(server: str, raw: bytes) -> dict:
    """POST raw bytes to the server's /completions; the decoded answer."""
    request = urllib.request.Request(
        server + "/completions", data=raw, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_ias_serve_takes_every_64_bit_seed_and_refuses_a_too_deep_body(server):
    for seed in (-(2**63), 2**64 - 1):
        answer = post(server, json.dumps({"prompt": "q", "max_tokens": 3, "seed": seed}).encode())
        assert len(answer["choices"]) == 1
    with pytest.raises(urllib.error.HTTPError) as refused:  # a RecursionError in the parser: answered, not dropped
        post(server, b"[" * 100_000)
    assert refused.value.code == 400 and "not valid JSON" in json.loads(refused.value.read())["error"]["message"]


def test_a_refused_request_stops_its_siblings_backoff_at_once():
    def answer(body):
        if body["prompt"] == "bad":
            return 400, {"error": {"message": "prompt is bad"}}
        return 503, {"error": {"message": "busy"}}, {"Retry-After": "30"}

    with fake_server(answer) as httpd:
        policy = load_policy("m", backend="openai", base_url=url_of(httpd), max_retries=2)
        started = time.monotonic()
        with pytest.raises(UserError, match=r"rejected the request \(400: prompt is bad\)"):
            policy.sample(["busy", "bad"], 1, SamplingParams(), [1, 2])
        assert time.monotonic() - started < 10  # not the 30 s Retry-After of the busy one


def test_backend_loading_errors_are_one_line():
    with pytest.raises(UserError, match="unknown policy backend 'tgi'; known: hf, openai, vllm"):
        load_policy("arith-weak", backend="tgi")
    with pytest.raises(UserError, match="policy backend 'openai' has no option bse_url; its options: base_url"):
        load_policy("m", backend="openai", bse_url="http://127.0.0.1:1/v1")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[vllm\]'"):
            load_policy("arith-weak", backend="vllm")


def test_a_wrong_model_name_names_the_served_ones(server):
    with pytest.raises(UserError, match="serves arith-weak, not 'arith-strong'"):
        load_policy("arith-strong", backend="openai", base_url=server, **FAST)


def test_ias_eval_over_the_server_end_to_end(server, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--backend",
            "openai",
            "--backend-opt",
            f"base_url={server}",
            "--backend-opt",
            "tokenizer=arith-weak",
            "--limit",
            "3",
            "--n-max",
            "4",
            "--strategies",
            "bon,ias-bon",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_problems"] == 3 and summary["methods"]["bon@4"]["samples"] == 12
    config = json.loads((out / "pool" / "config.json").read_text())
    assert config["backend"] == "openai" and server not in json.dumps(config)  # options stay out of the record
    code = main(["eval", "--backend", "openai", "--backend-opt", "bse_url=x", "--limit", "1", "--out", str(out)])
    assert code == 2 and "has no option bse_url" in capsys.readouterr().err


def test_deepconf_through_a_server_finishes_and_trims_what_hf_stops(client, zoo_policy, zoo_prm, capfd):
    """A server cannot stop a sample on its confidence: DeepConf's later samples are drawn in
    full and left out of the vote where the hf backend stops them, with the same answers;
    their tokens are counted in full (they were generated), and the run says so once."""
    from ias.methods import make_method
    from ias.methods.base import Question
    from ias.methods.engine import run_method
    from ias.methods.sources import LiveSource
    from ias.tasks.base import get_task

    task, prm = get_task("arith"), zoo_prm
    questions = [Question(p, task.extract) for p in task.problems("test", 3)]
    method = make_method("deepconf", warmup=4, n_max=12)
    live = run_method(method, questions, LiveSource(task, zoo_policy, prm, zoo_policy.defaults, 0, grade=False))
    served = run_method(method, questions, LiveSource(task, client, prm, zoo_policy.defaults, 0, grade=False))
    exits = sum(s.finish_reason == "exit" for a in live for s in a.samples)
    assert exits > 0
    for a, b in zip(live, served):
        assert a.answer == b.answer and a.n_samples == b.n_samples
        assert [s.finish_reason for s in a.samples] == [s.finish_reason for s in b.samples]
    assert sum(b.generated_tokens for b in served) > sum(a.generated_tokens for a in live)
    assert capfd.readouterr().err.count("cannot stop a sample on its confidence") == 1
