"""flover_client (clients/python) against real Flover clusters: `flover up` starts the
real coordinator and workers on stories260K (ports "*", read back from its "ready"
line), and the package is the one CMake builds (PYTHONPATH=build/clients/python).

Registered in CTest (tests/clients/CMakeLists.txt) with FLOVER_BIN and
FLOVER_MODELS_DIR set. Missing python3-zmq / python3-protobuf fail the test with the
command that installs them (scripts/install-deps.sh); nothing is skipped.
No wall-clock assertion: every wait is a generous upper bound for something that must
happen.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from typing import List, Optional

try:
    import google.protobuf  # noqa: F401
    import zmq  # noqa: F401
except ImportError as error:
    raise ImportError(
        f"python_client_test needs python3-zmq and python3-protobuf: run scripts/install-deps.sh ({error})"
    ) from error

import flover_client
from flover_client import AsyncClient, Client, Completion, ConnectionError, FloverError, TokenEvent

FLOVER = os.environ.get("FLOVER_BIN", "")
MODELS = os.environ.get("FLOVER_MODELS_DIR", "")
READY_WAIT_S = 300  # generous: the machine may be saturated by other tests
PROMPTS = ["Once upon a time", "Sara", "Ben had a red car", "Lily", "The cat", "Tom and", "One day", "The sun"]


def _check_environment() -> None:
    if not FLOVER or not os.access(FLOVER, os.X_OK):
        raise AssertionError(f"FLOVER_BIN must name the built flover binary, got '{FLOVER}'")
    model = os.path.join(MODELS, "stories260K", "stories260K.bin")
    if not os.path.exists(model):
        raise AssertionError(f"missing test model {model}: set FLOVER_MODELS_DIR (scripts/download-models.sh)")


def cluster_yaml(tensor: int, security: str = "") -> str:
    model_dir = os.path.join(MODELS, "stories260K")
    workers = "".join(f"  - {{replica: 0, rank: {k}, threads: 1}}\n" for k in range(tensor))
    return (
        "cluster:\n  name: python-test\n"
        "endpoints:\n  client: tcp://127.0.0.1:*\n  control: tcp://127.0.0.1:*\n  plans: tcp://127.0.0.1:*\n"
        f"model:\n  path: {model_dir}/stories260K.bin\n  tokenizer: {model_dir}/tok512.bin\n"
        f"parallel:\n  replicas: 1\n  tensor: {tensor}\n"
        f"workers:\n{workers}"
        "kv_cache:\n  block_size: 16\n  memory_mib: 16\n"
        "scheduler:\n  failover_wait_ms: 0\n"
        "heartbeat:\n  interval_ms: 100\n  timeout_ms: 30000\n  step_timeout_ms: 60000\n"
        "limits:\n  status_per_client_per_second: 1000\n" + security
    )


class UpCluster:
    """`flover up --config` in a child process; its output goes to a file."""

    def __init__(self, yaml_text: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="flover-python-test-")
        self.config = os.path.join(self.dir, "cluster.yaml")
        with open(self.config, "w") as f:
            f.write(yaml_text)
        self.log_path = os.path.join(self.dir, "up.log")
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [FLOVER, "up", "--config", self.config, "--ready-timeout", str(READY_WAIT_S)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.endpoint = self._wait_ready()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + READY_WAIT_S + 30
        while time.monotonic() < deadline:
            found = re.search(r"ready: client endpoint (tcp://\S+)", self.log())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"flover up exited ({self.process.returncode}) before ready:\n{self.log()}")
            time.sleep(0.1)
        log = self.log()
        self.stop()
        raise AssertionError(f"flover up not ready within {READY_WAIT_S + 30} s:\n{log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def flover_generate_json(endpoint: str, max_tokens: int, *args: str) -> dict:
    """What `flover generate --json` prints for one prompt (`args`: --prompt TEXT, ...)."""
    run = subprocess.run(
        [FLOVER, "generate", "--endpoint", endpoint, "--max-tokens", str(max_tokens), "--json", *args],
        capture_output=True, text=True, timeout=300,
    )
    if run.returncode != 0:
        raise AssertionError(f"flover generate failed ({run.returncode}): {run.stderr}")
    return json.loads(run.stdout)


class ClusterTest(unittest.TestCase):
    """One TP-2 cluster for the whole class."""

    cluster: UpCluster

    @classmethod
    def setUpClass(cls) -> None:
        _check_environment()
        cls.cluster = UpCluster(cluster_yaml(tensor=2))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def setUp(self) -> None:
        self.client = Client(self.cluster.endpoint, connect_timeout=60)

    def tearDown(self) -> None:
        self.client.close()

    def test_generate_greedy_equals_flover_generate(self) -> None:
        for prompt in ("Once upon a time", "Ben had a red car"):
            ours = self.client.generate(prompt, max_tokens=40)
            theirs = flover_generate_json(self.cluster.endpoint, 40, "--prompt", prompt)
            self.assertEqual(ours.tokens, theirs["tokens"])
            self.assertEqual(ours.text, theirs["text"])
            self.assertEqual(ours.finish_reason, theirs["finish_reason"])
            self.assertEqual(ours.usage.prompt_tokens, theirs["prompt_tokens"])
            self.assertEqual(ours.usage.completion_tokens, len(ours.tokens))
            self.assertEqual(ours.replica, 0)
            self.assertGreaterEqual(ours.timings.total_seconds, ours.timings.first_token_seconds)

    def test_token_ids_and_stop_string(self) -> None:
        ids = [1, 269, 368]
        by_ids = self.client.generate(ids, max_tokens=30)
        self.assertEqual(by_ids.usage.prompt_tokens, 3)
        self.assertEqual(by_ids.tokens, flover_generate_json(self.cluster.endpoint, 30, "--prompt-ids", "1,269,368")["tokens"])

        full = self.client.generate("Once upon a time", max_tokens=60, ignore_eos=True)
        words = full.text.split(" ")
        self.assertGreater(len(words), 4, full.text)
        stop = " " + words[3]
        stopped = self.client.generate("Once upon a time", max_tokens=60, ignore_eos=True, stop=[stop, "never seen"])
        self.assertEqual(stopped.finish_reason, "stop")
        self.assertEqual(stopped.text, full.text[: full.text.index(stop)])

    def test_stream_events_join_to_the_final_text(self) -> None:
        events: List[TokenEvent] = []
        final: Optional[Completion] = None
        for item in self.client.stream("Sara", max_tokens=48):
            if isinstance(item, TokenEvent):
                self.assertIsNone(final, "an event after the completion")
                events.append(item)
            else:
                final = item
        self.assertIsNotNone(final)
        assert final is not None
        self.assertEqual("".join(e.text for e in events), final.text)
        self.assertEqual([t for e in events for t in e.tokens], final.tokens)
        self.assertEqual(final.tokens, self.client.generate("Sara", max_tokens=48).tokens)

    def test_logprobs_stream_and_completion_agree_and_greedy_picks_the_top(self) -> None:
        events: List[TokenEvent] = []
        final: Optional[Completion] = None
        for item in self.client.stream("Lily", max_tokens=24, logprobs=True, top_logprobs=3):
            if isinstance(item, TokenEvent):
                events.append(item)
            else:
                final = item
        assert final is not None
        self.assertEqual(len(final.logprobs), len(final.tokens))
        self.assertEqual([lp for e in events for lp in e.logprobs], final.logprobs)
        for token, lp in zip(final.tokens, final.logprobs):
            self.assertEqual(len(lp.top), 3)
            self.assertEqual(lp.top[0][0], token, "greedy takes the most likely token")
            self.assertAlmostEqual(lp.top[0][1], lp.logprob, places=5)
            self.assertLessEqual(lp.logprob, 0.0)
            self.assertEqual([p for _, p in lp.top], sorted((p for _, p in lp.top), reverse=True))
        plain = self.client.generate("Lily", max_tokens=24)
        self.assertEqual(plain.tokens, final.tokens, "asking for logprobs does not change the tokens")
        self.assertEqual(plain.logprobs, [])

    def test_penalties_change_the_tokens_and_bad_ones_are_refused(self) -> None:
        plain = self.client.generate("Once upon a time", max_tokens=60, ignore_eos=True)
        penalized = self.client.generate("Once upon a time", max_tokens=60, ignore_eos=True, frequency_penalty=2.0)
        self.assertNotEqual(plain.tokens, penalized.tokens)
        # A token repeated in the output costs 2 per repeat: the penalized text repeats less.
        self.assertLess(len(penalized.tokens) - len(set(penalized.tokens)), len(plain.tokens) - len(set(plain.tokens)))
        again = self.client.generate("Once upon a time", max_tokens=60, ignore_eos=True, frequency_penalty=2.0)
        self.assertEqual(again.tokens, penalized.tokens)
        with self.assertRaises(FloverError) as raised:
            self.client.generate("Once", presence_penalty=3.0)
        self.assertEqual(raised.exception.code, "InvalidArgument")

    def test_cancel_ends_with_finish_reason_cancelled(self) -> None:
        with self.client.stream("Ben", max_tokens=500, ignore_eos=True) as stream:
            first = next(stream)
            self.assertIsInstance(first, TokenEvent)
            self.assertTrue(self.client.cancel(stream.request_id))
            rest = list(stream)
        self.assertIsInstance(rest[-1], Completion)
        self.assertEqual(rest[-1].finish_reason, "cancelled")
        self.assertLess(len(rest[-1].tokens), 500)
        self.assertFalse(self.client.cancel(stream.request_id), "an ended request is not in flight")

    def test_status_has_the_replica(self) -> None:
        status = self.client.status()
        self.assertEqual(status["name"], "python-test")
        self.assertEqual(len(status["replicas"]), 1)
        replica = status["replicas"][0]
        self.assertEqual(replica["state"], "ready")
        self.assertEqual(len(replica["workers"]), 2)
        self.assertEqual(status["model"]["vocab_size"], 512)

    def test_errors_carry_the_coordinator_code(self) -> None:
        with self.assertRaises(FloverError) as raised:
            self.client.generate("Sara", max_tokens=0)
        self.assertEqual(raised.exception.code, "InvalidArgument")
        self.assertIn("max_tokens", raised.exception.message)
        with self.assertRaises(FloverError) as raised:
            self.client.generate([1, 99999], max_tokens=4)
        self.assertEqual(raised.exception.code, "InvalidArgument")
        with self.assertRaises(ValueError):  # not valid UTF-8: refused before it is sent
            self.client.generate(b"caf\xff", max_tokens=4)
        with self.assertRaises(TypeError):
            self.client.generate("Sara", no_such_parameter=1)
        # The connection still serves.
        self.assertEqual(self.client.generate("Sara", max_tokens=4).finish_reason, "length")

    def test_asyncio_concurrent_requests_equal_their_sync_twins(self) -> None:
        twins = [self.client.generate(p, max_tokens=32, temperature=0.8, seed=7 + i) for i, p in enumerate(PROMPTS)]

        async def run() -> List[Completion]:
            async with AsyncClient(self.cluster.endpoint, connect_timeout=60) as client:
                results = await asyncio.gather(
                    *(client.generate(p, max_tokens=32, temperature=0.8, seed=7 + i) for i, p in enumerate(PROMPTS))
                )
                status = await client.status()
                self.assertEqual(status["replicas"][0]["state"], "ready")
                return list(results)

        results = asyncio.run(run())
        self.assertEqual(len(results), 8)
        for twin, result in zip(twins, results):
            self.assertEqual(result.tokens, twin.tokens)
            self.assertEqual(result.text, twin.text)
            self.assertEqual(result.finish_reason, twin.finish_reason)
        self.assertEqual(len({r.request_id for r in results}), 8)

    def test_asyncio_stream_and_cancel(self) -> None:
        async def run() -> None:
            async with AsyncClient(self.cluster.endpoint, connect_timeout=60) as client:
                texts = []
                async with client.stream("Lily", max_tokens=24) as stream:
                    async for item in stream:
                        if isinstance(item, TokenEvent):
                            texts.append(item.text)
                assert stream.completion is not None
                self.assertEqual("".join(texts), stream.completion.text)

                long = asyncio.create_task(client.generate("Tom", max_tokens=500, ignore_eos=True, request_id="long"))
                while not await client.cancel("long"):  # until it is in flight
                    await asyncio.sleep(0.01)
                self.assertEqual((await long).finish_reason, "cancelled")

        asyncio.run(run())


class SecuredClusterTest(unittest.TestCase):
    """A cluster with security.mode curve; keys from `flover keygen`."""

    @classmethod
    def setUpClass(cls) -> None:
        _check_environment()
        cls.keys = tempfile.mkdtemp(prefix="flover-python-keys-")
        for name in ("coordinator", "workers/worker", "admins/up", "clients/alice", "other/eve"):
            subprocess.run([FLOVER, "keygen", "--out", os.path.join(cls.keys, name)], check=True,
                           capture_output=True, timeout=60)
        k = cls.keys
        security = (
            f"security:\n  mode: curve\n  coordinator_key: {k}/coordinator.key\n"
            f"  coordinator_public_key: {k}/coordinator.pub\n  worker_key: {k}/workers/worker.key\n"
            f"  client_key: {k}/admins/up.key\n  worker_keys: {k}/workers\n"
            f"  client_keys: {k}/clients\n  admin_keys: {k}/admins\n"
        )
        cls.cluster = UpCluster(cluster_yaml(tensor=1, security=security))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()
        shutil.rmtree(cls.keys, ignore_errors=True)

    def keys_of(self, name: str) -> dict:
        return {"client_key": f"{self.keys}/{name}.key", "server_key": f"{self.keys}/coordinator.pub"}

    def test_an_admitted_key_generates(self) -> None:
        with Client(self.cluster.endpoint, connect_timeout=60, **self.keys_of("clients/alice")) as client:
            ours = client.generate("Once upon a time", max_tokens=16)
        theirs = flover_generate_json(self.cluster.endpoint, 16, "--prompt", "Once upon a time", "--key",
                                      f"{self.keys}/clients/alice.key", "--server-key", f"{self.keys}/coordinator.pub")
        self.assertEqual(ours.tokens, theirs["tokens"])

    def test_refusals_are_clear(self) -> None:
        with self.assertRaises(FloverError) as raised:
            Client(self.cluster.endpoint, connect_timeout=60, **self.keys_of("other/eve"))
        self.assertEqual(raised.exception.code, "PermissionDenied")
        self.assertIn("security.client_keys", raised.exception.message)
        with self.assertRaises(FloverError) as raised:
            Client(self.cluster.endpoint, connect_timeout=60)
        self.assertEqual(raised.exception.code, "FailedPrecondition")
        self.assertIn("requires CURVE", raised.exception.message)


def child_pids(pid: int) -> List[int]:
    children: List[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    return children


def command_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode(errors="replace")


class CoordinatorLossTest(unittest.TestCase):
    """A coordinator that dies ends the requests in flight with ConnectionError at
    once, not after the reply timeout."""

    def test_requests_in_flight_end_with_connection_error(self) -> None:
        _check_environment()
        cluster = UpCluster(cluster_yaml(tensor=1))
        children = {command_of(p).rsplit("/", 1)[-1]: p for p in child_pids(cluster.process.pid)}
        self.assertEqual(set(children), {"flover-coordinator", "flover-worker"})
        # The worker stopped: the requests stay in flight, whatever the machine's speed.
        os.kill(children["flover-worker"], signal.SIGSTOP)
        try:
            client = Client(cluster.endpoint, connect_timeout=60, reply_timeout=3600)
            stream = client.stream("Ben", max_tokens=8)
            client.status()  # the coordinator answers in order: the submit has arrived

            async def run() -> None:
                async with AsyncClient(cluster.endpoint, connect_timeout=60, reply_timeout=3600) as other:
                    task = asyncio.create_task(other.generate("Sara", max_tokens=8))
                    await asyncio.sleep(0)  # the task submits
                    await other.status()
                    os.kill(children["flover-coordinator"], signal.SIGKILL)
                    with self.assertRaises(ConnectionError) as raised:
                        await task
                    self.assertIn("closed", str(raised.exception))

            asyncio.run(run())
            with self.assertRaises(ConnectionError) as raised:
                for _ in stream:
                    pass
            self.assertIn(f"the connection to the coordinator at {cluster.endpoint} closed", str(raised.exception))
            client.close()
        finally:
            try:
                os.kill(children["flover-worker"], signal.SIGCONT)
            except ProcessLookupError:
                pass  # flover up, seeing its coordinator gone, already killed it
            cluster.stop()


class OfflineTest(unittest.TestCase):
    """What needs no cluster: a closed endpoint, key files, the versions."""

    def test_nothing_listening_is_a_connection_error_naming_the_endpoint(self) -> None:
        with socket.socket() as bound:  # bound, not listening: connects are refused
            bound.bind(("127.0.0.1", 0))
            endpoint = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
            with self.assertRaises(ConnectionError) as raised:
                Client(endpoint, connect_timeout=0.5)
            self.assertIn(f"nothing answered at {endpoint}", str(raised.exception))
            self.assertEqual(raised.exception.code, "Unavailable")

            async def connect() -> None:
                client = AsyncClient(endpoint, connect_timeout=0.5)
                try:
                    await client.generate("Sara")
                finally:
                    await client.close()

            with self.assertRaises(ConnectionError):
                asyncio.run(connect())

    def test_key_files_of_flover_keygen(self) -> None:
        _check_environment()
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([FLOVER, "keygen", "--out", f"{d}/me"], check=True, capture_output=True, timeout=60)
            keys = flover_client.load_client_keys(f"{d}/me.key", f"{d}/me.pub")
            assert keys is not None
            self.assertEqual(keys.server_key, keys.public_key)
            self.assertEqual(len(keys.secret_key), 40)
            self.assertNotIn(keys.secret_key.decode(), repr(keys))
            with self.assertRaises(FloverError) as raised:
                flover_client.load_client_keys(f"{d}/me.key", None)
            self.assertEqual(raised.exception.code, "InvalidArgument")
            os.chmod(f"{d}/me.key", 0o644)
            with self.assertRaises(FloverError) as raised:
                flover_client.load_client_keys(f"{d}/me.key", f"{d}/me.pub")
            self.assertEqual(raised.exception.code, "PermissionDenied")
            self.assertIn("chmod 600", raised.exception.message)
            os.chmod(f"{d}/me.key", 0o600)
            with self.assertRaises(FloverError) as raised:  # a key pair given as the server's public key
                flover_client.load_client_keys(f"{d}/me.key", f"{d}/me.key")
            self.assertIn("a secret key has no place in a public key file", raised.exception.message)

    def test_versions_are_the_builds(self) -> None:
        _check_environment()
        run = subprocess.run([FLOVER, "--version"], capture_output=True, text=True, timeout=60)
        self.assertEqual(run.stdout.strip(),
                         f"flover {flover_client.__version__} (protocol {flover_client.PROTOCOL_VERSION})")


if __name__ == "__main__":
    unittest.main()
