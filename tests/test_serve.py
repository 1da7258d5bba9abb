"""`ias serve` as operators and clients meet it: the official `openai` client, keys, limits,
timeouts, fairness, a full queue, clients that leave, graceful shutdown. Real servers on
loopback serving the zoo policy; every request loop is bounded."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from ias.serve import make_server
from ias.serve.limits import ServeLimits

from loopback import call, running

BIG = {"prompt": [f"Compute {k}+{k}*3-1.\n\n" for k in range(3, 7)], "n": 256, "seed": 5}  # 4 steps of 256 samples


def serving(policy, **limits):
    return running(make_server(policy, "arith-weak", port=0, limits=ServeLimits(access_log=False, **limits)))


def metric(url: str, name: str) -> float:
    text = call(url.removesuffix("/v1"), path="/metrics")[1]
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def raw_exchange(url: str, request: bytes, timeout: float = 30) -> bytes:
    """Send raw bytes, read the answer until the server closes or `timeout`."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"error"' in answer:
                break
    return answer


def test_the_official_openai_client_with_an_api_key(zoo_policy):
    with serving(zoo_policy, api_key="sekret") as server:
        client = openai.OpenAI(api_key="sekret", base_url=server.url, max_retries=0)
        answer = client.completions.create(model="arith-weak", prompt="Compute 5-2.\n\n", n=3, seed=1, max_tokens=40)
        params = dataclasses.replace(zoo_policy.defaults, max_tokens=40)
        expected = zoo_policy.sample(["Compute 5-2.\n\n"], 3, params, [1])[0]
        assert [c.text for c in answer.choices] == [s.text for s in expected]
        assert answer.usage.completion_tokens == sum(s.generated_tokens for s in expected)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="wrong", base_url=server.url, max_retries=0).completions.create(
                model="arith-weak", prompt="q"
            )
        status, body, headers = call(server.url, {"prompt": "q"})  # no Authorization at all
        assert status == 401 and body["error"]["type"] == "authentication_error" and headers["www-authenticate"]
        assert call(server.url.removesuffix("/v1"), path="/health")[0] == 200  # probes need no key
        assert call(server.url.removesuffix("/v1"), path="/metrics")[0] == 401


def test_two_hundred_concurrent_clients_are_all_answered(zoo_policy):
    with serving(zoo_policy) as server:

        def one(k: int) -> int:
            return call(server.url, {"prompt": f"Compute {k % 9}+1.\n\n", "max_tokens": 8, "seed": k})[0]

        with ThreadPoolExecutor(200) as pool:
            statuses = list(pool.map(one, range(200)))
        assert statuses == [200] * 200
        assert metric(server.url, "ias_samples_total") == 200


def test_limits_refuse_by_size_before_reading(zoo_policy):
    with serving(
        zoo_policy, max_request_bytes=1 << 20, max_prompt_chars=1000, max_n=8, max_samples=16, read_timeout_s=1.0
    ) as server:
        # 10 MB announced, nothing sent: refused by its Content-Length at once.
        head = (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        assert raw_exchange(server.url, head, timeout=10).startswith(b"HTTP/1.1 413")
        # More announced than sent: 408 after the read timeout, not a connection held forever.
        started = time.monotonic()
        short = head.replace(b"10000000", b"100") + b'{"prompt":'
        assert raw_exchange(server.url, short, timeout=10).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 5
        for body, param in (
            ({"prompt": "x" * 1001}, "prompt"),
            ({"prompt": "q", "n": 9}, "n"),
            ({"prompt": ["a", "b", "c"], "n": 8}, "n"),
        ):
            status, answer, _ = call(server.url, body)
            assert status == 400 and answer["error"]["param"] == param
        status, answer, _ = call(server.url, {"prompt": "q"}, path="/chat/nothing")
        assert status == 404 and "no route" in answer["error"]["message"]


def test_a_large_request_does_not_starve_a_small_one(zoo_policy):
    with serving(zoo_policy) as server:
        done = {}

        def timed(name: str, body: dict) -> None:
            done[name] = (call(server.url, body)[0], time.monotonic())

        big = threading.Thread(target=timed, args=("big", BIG))
        big.start()
        time.sleep(0.5)  # the big request is being sampled
        small = threading.Thread(target=timed, args=("small", {"prompt": "Compute 2+2.\n\n", "seed": 1}))
        small.start()
        small.join()
        big.join()
        assert done["small"][0] == done["big"][0] == 200
        assert done["small"][1] < done["big"][1]


def test_a_full_queue_answers_429_at_once(zoo_policy):
    with serving(zoo_policy, max_queue=1) as server:
        big = threading.Thread(target=call, args=(server.url, BIG))
        big.start()
        deadline = time.monotonic() + 30
        while metric(server.url, "ias_queue_depth") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        status, answer, headers = call(server.url, {"prompt": "Compute 1+1.\n\n"})  # the queue holds one
        assert status == 429 and headers["retry-after"] == "1" and "--max-queue 1" in answer["error"]["message"]
        assert time.monotonic() - started < 5  # refused at once, not after the big one
        big.join()


def test_a_client_that_leaves_frees_its_work_and_a_timeout_is_504(zoo_policy):
    with serving(zoo_policy, request_timeout_s=60) as server:
        started = time.monotonic()
        assert call(server.url, BIG)[0] == 200
        full = time.monotonic() - started
        body = json.dumps(BIG).encode()
        request = (
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        host, port = server.url.split("//")[1].split("/")[0].split(":")
        conn = socket.create_connection((host, int(port)))
        conn.sendall(request)
        time.sleep(0.3)
        left = time.monotonic()
        conn.close()
        while metric(server.url, "ias_queue_depth") > 0 and time.monotonic() - left < 60:
            time.sleep(0.05)
        assert metric(server.url, "ias_cancelled_requests_total") == 1
        assert time.monotonic() - left < 0.75 * full  # the rest of its units were never sampled
        # The same for a stream: its first prompt's choices arrive, then the client leaves.
        body = json.dumps({**BIG, "stream": True}).encode()
        conn = socket.create_connection((host, int(port)))
        conn.sendall(
            request.split(b"Content-Length")[0] + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        received = b""
        while b"data: {" not in received:
            received += conn.recv(65536)
        left = time.monotonic()
        conn.close()
        while metric(server.url, "ias_queue_depth") > 0 and time.monotonic() - left < 60:
            time.sleep(0.05)
        assert metric(server.url, "ias_cancelled_requests_total") == 2
        assert time.monotonic() - left < 0.75 * full
    with serving(zoo_policy, request_timeout_s=0.3) as server:
        status, answer, _ = call(server.url, BIG)
        assert status == 504 and "--request-timeout" in answer["error"]["message"]


def test_sigterm_drains_access_logs_and_metrics(tmp_path):
    log = tmp_path / "stderr.txt"
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
        url = proc.stdout.readline().split()[-1]
        result = {}
        long = threading.Thread(target=lambda: result.setdefault("big", call(url, BIG)))
        long.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        status, answer, headers = call(url, {"prompt": "q"})  # during the drain: refused, with a retry hint
        assert status == 503 and "shutting down" in answer["error"]["message"] and headers["retry-after"]
        long.join(timeout=120)
        assert result["big"][0] == 200 and len(result["big"][1]["choices"]) == 4 * 256
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert {(x["path"], x["status"]) for x in lines} >= {("/v1/completions", 200), ("/v1/completions", 503)}
    assert all(x["latency_ms"] >= 0 and x["method"] in ("GET", "POST") for x in lines)


def test_metrics_count_requests_and_tokens(zoo_policy):
    with serving(zoo_policy) as server:
        status, answer, _ = call(server.url, {"prompt": ["Compute 3+4.\n\n", "Compute 8-5.\n\n"], "n": 2, "seed": 3})
        assert status == 200
        text = call(server.url.removesuffix("/v1"), path="/metrics")[1]
        assert 'ias_requests_total{route="/v1/completions",status="200"} 1' in text
        assert metric(server.url, "ias_generated_tokens_total") == answer["usage"]["completion_tokens"]
        assert metric(server.url, "ias_request_latency_seconds_count") == 1


def test_without_the_serve_extra_the_error_names_it():
    script = (
        "import sys; sys.modules['starlette'] = None\n"
        "from ias.cli import main\nsys.exit(main(['serve', '--port', '0']))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ias: error: ias serve needs the 'serve' extra: pip install -e '.[serve]' (in the ias clone)"
    )


def test_chat_and_streams_through_the_openai_client(zoo_policy):
    params = dataclasses.replace(zoo_policy.defaults, max_tokens=40)
    expected = [
        s.text
        for group in zoo_policy.sample(["Compute 5-2.\n\n", "Compute 7+1.\n\n"], 2, params, [9, 9])
        for s in group
    ]
    with serving(zoo_policy) as server:
        client = openai.OpenAI(api_key="unused", base_url=server.url, max_retries=0)
        # Chat: a policy without a chat template (the zoo) reads the messages in its raw shape.
        chat = client.chat.completions.create(
            model="arith-weak", messages=[{"role": "user", "content": "Compute 5-2."}], n=2, seed=9, max_tokens=40
        )
        assert [c.message.content for c in chat.choices] == expected[:2] and chat.object == "chat.completion"
        # Streams: each prompt's choices arrive as they are sampled; the same texts as a whole answer.
        texts = {}
        for chunk in client.completions.create(
            model="arith-weak", prompt=["Compute 5-2.\n\n", "Compute 7+1.\n\n"], n=2, seed=9, max_tokens=40, stream=True
        ):
            texts.update({c.index: c.text for c in chunk.choices})
        assert [texts[k] for k in range(4)] == expected
        pieces, spent = {}, None
        for chunk in client.chat.completions.create(
            model="arith-weak",
            messages=[{"role": "user", "content": "Compute 7+1."}],
            n=2,
            seed=9,
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        ):
            pieces.update({c.index: c.delta.content for c in chunk.choices})
            spent = chunk.usage or spent
        assert [pieces[0], pieces[1]] == expected[2:] and spent.completion_tokens > 0
        with pytest.raises(openai.BadRequestError, match="logprobs"):
            client.chat.completions.create(
                model="arith-weak", messages=[{"role": "user", "content": "q"}], logprobs=True
            )
        status, answer, _ = call(server.url, {"messages": []}, path="/chat/completions")
        assert status == 400 and answer["error"]["param"] == "messages"
