"""The OpenAI-compatible HTTP API of a real cluster, through the real `openai` package and curl.

Run by CTest under `flover up --exec`, which starts a coordinator and its workers from
tests/http/*.yaml and sets FLOVER_ENDPOINT (the native ZeroMQ endpoint) and
FLOVER_HTTP_ENDPOINT (http://HOST:PORT). FLOVER_BIN_DIR holds the `flover` CLI, whose
`generate` is the reference the HTTP answers are checked against token for token.
With FLOVER_TEST_API_KEY set the cluster requires that key (http.api_keys).
"""

import json
import math
import os
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

HTTP = os.environ["FLOVER_HTTP_ENDPOINT"].rstrip("/")
NATIVE = os.environ["FLOVER_ENDPOINT"]
BIN_DIR = os.environ["FLOVER_BIN_DIR"]
API_KEY = os.environ.get("FLOVER_TEST_API_KEY", "")
MODEL = "stories260K"
PROMPT = "Once upon a time"


def client(key=None):
    return openai.OpenAI(base_url=HTTP + "/v1", api_key=key or API_KEY or "unused", max_retries=0, timeout=300)


def native_generate(prompt, max_tokens):
    """What `flover generate` gets for a greedy request over the native API: `prompt` is
    text or a list of token ids."""
    given = ["--prompt", prompt] if isinstance(prompt, str) else ["--prompt-ids", ",".join(map(str, prompt))]
    out = subprocess.run(
        [os.path.join(BIN_DIR, "flover"), "generate", "--endpoint", NATIVE, *given,
         "--max-tokens", str(max_tokens), "--json"],
        check=True, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, FLOVER_ENDPOINT=NATIVE))
    return json.loads(out.stdout.strip().splitlines()[-1])


def curl(*args):
    headers = ["-H", "Authorization: Bearer " + API_KEY] if API_KEY else []
    return subprocess.run(["curl", "-sS", "--max-time", "300", *headers, *args],
                          check=True, capture_output=True, text=True).stdout


def http_get(path, key=None):
    request = urllib.request.Request(HTTP + path)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(request, timeout=300) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics():
    status, text = http_get("/metrics")
    assert status == 200, (status, text)
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample_value(families, name, **labels):
    """The value of the sample `name` (a family's sample name) with these labels."""
    total = 0.0
    found = False
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
                found = True
    assert found, f"no sample {name} {labels}"
    return total


class Completions(unittest.TestCase):
    def test_models_lists_the_served_model(self):
        models = client().models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])

    def test_greedy_text_equals_the_native_api(self):
        reference = native_generate(PROMPT, 24)
        r = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=24, temperature=0)
        self.assertEqual(r.choices[0].text, reference["text"])
        self.assertEqual(r.usage.completion_tokens, reference["completion_tokens"])
        self.assertEqual(r.usage.prompt_tokens, reference["prompt_tokens"])
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(r.object, "text_completion")

    def test_stream_joins_to_the_whole_text_with_usage(self):
        whole = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=32, temperature=0)
        chunks = list(client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=32, temperature=0,
                                                  stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].text)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, [whole.choices[0].finish_reason])
        self.assertIsNotNone(chunks[-1].usage)
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)

    def test_token_prompts_and_lists_of_prompts(self):
        ids = [1, 100, 200, 300]
        by_ids = client().completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
        self.assertEqual(by_ids.usage.prompt_tokens, len(ids))
        self.assertEqual(by_ids.choices[0].text, native_generate(ids, 12)["text"])
        many = client().completions.create(model=MODEL, prompt=[PROMPT, "The cat"], max_tokens=8, temperature=0)
        self.assertEqual(sorted(c.index for c in many.choices), [0, 1])
        texts = {c.index: c.text for c in many.choices}
        self.assertEqual(texts[0], native_generate(PROMPT, 8)["text"])
        self.assertEqual(texts[1], native_generate("The cat", 8)["text"])
        lists = client().completions.create(model=MODEL, prompt=[ids, [1, 42]], max_tokens=5, temperature=0)
        self.assertEqual(sorted(c.index for c in lists.choices), [0, 1])

    def test_n_choices_and_seed_reproducibility(self):
        kwargs = dict(model=MODEL, prompt=PROMPT, max_tokens=20, temperature=1.0, top_p=0.95, n=3, seed=1234)
        a = client().completions.create(**kwargs)
        b = client().completions.create(**kwargs)
        self.assertEqual(sorted(c.index for c in a.choices), [0, 1, 2])
        self.assertEqual([c.text for c in sorted(a.choices, key=lambda c: c.index)],
                         [c.text for c in sorted(b.choices, key=lambda c: c.index)])
        self.assertGreaterEqual(a.usage.completion_tokens, 3)
        self.assertLessEqual(a.usage.completion_tokens, 60)
        other = client().completions.create(**dict(kwargs, seed=99))
        self.assertEqual(len(other.choices), 3)

    def test_stop_string_ends_the_text(self):
        whole = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0).choices[0].text
        words = whole.split()
        self.assertGreater(len(words), 3, whole)
        stop = " " + words[2]
        cut = whole[: whole.index(stop)]
        r = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0, stop=[stop, "zzzz"])
        self.assertEqual(r.choices[0].text, cut)
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_logprobs_with_alternatives(self):
        r = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=3)
        lp = r.choices[0].logprobs
        n = r.usage.completion_tokens
        self.assertEqual(len(lp.tokens), n)
        self.assertEqual(len(lp.token_logprobs), n)
        self.assertEqual(len(lp.top_logprobs), n)
        self.assertEqual("".join(lp.tokens), r.choices[0].text)
        for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertLessEqual(logprob, 0.0)
            self.assertLessEqual(len(top), 4)
            best = max(top.items(), key=lambda kv: kv[1])
            self.assertTrue(math.isclose(best[1], logprob, rel_tol=1e-5, abs_tol=1e-5), (token, logprob, top))

    def test_echo_puts_the_prompt_first(self):
        r = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0, echo=True)
        plain = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
        self.assertEqual(r.choices[0].text, PROMPT + plain.choices[0].text)

    def test_bad_requests_name_the_field(self):
        with self.assertRaises(openai.BadRequestError) as e:
            client().completions.create(model=MODEL, prompt=PROMPT, max_tokens="many")
        self.assertEqual(e.exception.body.get("param"), "max_tokens")
        with self.assertRaises(openai.BadRequestError) as e:
            client().completions.create(model=MODEL, prompt=PROMPT, temperature=7)
        self.assertEqual(e.exception.body.get("param"), "temperature")
        with self.assertRaises(openai.NotFoundError):
            client().completions.create(model="no-such-model", prompt=PROMPT, max_tokens=4)


class Chat(unittest.TestCase):
    MESSAGES = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me one."}]

    def test_chat_and_its_stream_agree(self):
        whole = client().chat.completions.create(model=MODEL, messages=self.MESSAGES, max_completion_tokens=24,
                                                 temperature=0)
        self.assertEqual(whole.object, "chat.completion")
        self.assertEqual(whole.choices[0].message.role, "assistant")
        chunks = list(client().chat.completions.create(model=MODEL, messages=self.MESSAGES, max_completion_tokens=24,
                                                       temperature=0, stream=True,
                                                       stream_options={"include_usage": True}))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)

    def test_chat_logprobs(self):
        r = client().chat.completions.create(model=MODEL, messages=self.MESSAGES, max_tokens=8, temperature=0,
                                             logprobs=True, top_logprobs=2)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        for entry in content:
            self.assertLessEqual(len(entry.top_logprobs), 2)
            self.assertTrue(math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-5))


class Operations(unittest.TestCase):
    def test_health_and_metrics(self):
        status, body = http_get("/health")
        self.assertEqual(status, 200, body)
        client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
        families = metrics()
        for name in ("flover:num_requests_running", "flover:num_requests_waiting",
                     "flover:time_to_first_token_seconds", "flover:e2e_request_latency_seconds",
                     "flover:request_queue_time_seconds", "flover:time_per_output_token_seconds",
                     "flover:prompt_tokens", "flover:generation_tokens", "flover:request_success"):
            self.assertIn(name, families, sorted(families))
        self.assertGreaterEqual(sample_value(families, "flover:request_success_total"), 1)
        self.assertGreaterEqual(sample_value(families, "flover:e2e_request_latency_seconds_count"), 1)

    def test_curl_stream_ends_with_done(self):
        body = json.dumps({"model": MODEL, "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "stream": True})
        out = curl("-N", "-H", "Content-Type: application/json", "-d", body, HTTP + "/v1/completions")
        events = [line[len("data: "):] for line in out.splitlines() if line.startswith("data: ")]
        self.assertEqual(events[-1], "[DONE]")
        text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1] if json.loads(e)["choices"])
        whole = json.loads(curl("-H", "Content-Type: application/json", "-d",
                                json.dumps({"model": MODEL, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}),
                                HTTP + "/v1/completions"))
        self.assertEqual(text, whole["choices"][0]["text"])

    def test_a_client_that_leaves_cancels_its_request(self):
        before = sample_value(metrics(), "flover:request_success_total", finished_reason="abort")
        stream = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=5000, temperature=0,
                                             stream=True, extra_body={"ignore_eos": True})
        for i, _ in enumerate(stream):
            if i == 3:
                break
        stream.close()
        for _ in range(600):  # generous: the cancel lands at the coordinator's next step
            families = metrics()
            if sample_value(families, "flover:request_success_total", finished_reason="abort") > before:
                break
            time.sleep(0.5)
        self.assertGreater(sample_value(metrics(), "flover:request_success_total", finished_reason="abort"), before)


class ApiKeys(unittest.TestCase):
    """Run alone (CTest's key run), against a cluster with http.api_keys."""

    @classmethod
    def setUpClass(cls):
        assert API_KEY, "ApiKeys needs FLOVER_TEST_API_KEY and a cluster that requires it"

    def test_a_wrong_or_missing_key_is_refused(self):
        with self.assertRaises(openai.AuthenticationError):
            client(key="not-the-key").completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
        status, body = http_get("/v1/models")
        self.assertEqual(status, 401, body)
        self.assertIn("error", json.loads(body))
        self.assertEqual(http_get("/health")[0], 200)  # load balancers probe without a key

    def test_the_key_is_accepted(self):
        r = client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0)
        self.assertEqual(len(r.choices), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)  # CTest names the classes to run: ApiKeys only with a key
