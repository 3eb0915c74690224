#!/usr/bin/env python3
"""scripts/hf-side-by-side.sh end to end on the CPU: the tiny random LLaMA (2 layers,
dim 256, the 7B's vocabulary) written as a Hugging Face folder, served by a Flover
cluster (a coordinator and one CPU worker) and by transformers' static batching, both in
fp32, on 4 requests of 16 tokens under Poisson and fixed arrivals.

Checks that both engines produced every request's tokens, that they generated the same
greedy tokens for every request (the same weights in fp32: this is what shows that both
load the same model), that Flover's text is transformers' decoding of those tokens (the
same tokenizer), and that the reports are well formed and describe the same workload
and arrival times. No duration is asserted.

Seed 2 (weights and workload): its 64 greedy steps have a margin of at least 1.7e-3
between the best two logits, far above the two engines' fp32 rounding differences
(seed 0 has a step at 2e-5); q_proj / k_proj rows read in the other rotary layout by one
engine change 32 of the 64 tokens.

Needs the Python environment of scripts/reference/setup-venv.sh (torch, transformers),
named by FLOVER_HF_VENV (CTest passes BUILD/hf-venv, made by its hf_venv fixture);
without it the test is skipped (exit 77), saying why. FLOVER names the flover CLI (CTest passes the build's).
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "hf-side-by-side.sh")
SKIP = 77
REQUESTS, OUTPUT_LEN, ARRIVALS, SEED = 4, 16, ("poisson", "fixed"), 2


def venv_python():
    """The venv's python, or exit 77 saying what is missing."""
    venv = os.environ.get("FLOVER_HF_VENV", os.path.join(ROOT, "build", "hf-venv"))
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        print(f"SKIPPED: no Python environment at {venv} (make it with scripts/reference/setup-venv.sh {venv})")
        sys.exit(SKIP)
    probe = subprocess.run([python, "-c", "import numpy, torch, transformers"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        print(f"SKIPPED: {python} cannot import numpy, torch and transformers ({last}); "
              f"scripts/reference/setup-venv.sh {venv} installs them")
        sys.exit(SKIP)
    return python


class HfSideBySide(unittest.TestCase):
    python = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hf-side-by-side-test-")
        cls.out = os.path.join(cls.tmp.name, "out")
        cls.model = os.path.join(cls.tmp.name, "model")
        env = dict(os.environ, PYTHON=cls.python, OMP_NUM_THREADS="1")
        cls.driver = subprocess.run(
            ["bash", SCRIPT, "--device", "cpu", "--shape", "tiny", "--requests", str(REQUESTS),
             "--output-len", str(OUTPUT_LEN), "--arrivals", ",".join(ARRIVALS), "--threads", "1", "--seed", str(SEED),
             "--model-dir", cls.model, "--out", cls.out],
            env=env, capture_output=True, text=True, timeout=1200)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def read(self, name):
        with open(os.path.join(self.out, name)) as f:
            return json.load(f)

    def flover_greedy(self):
        with open(os.path.join(self.out, "flover-greedy.json")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_the_driver_succeeds(self):
        self.assertEqual(self.driver.returncode, 0, self.driver.stdout + self.driver.stderr)

    def test_both_engines_generate_every_requests_tokens(self):
        for arrival in ARRIVALS:
            for engine in ("flover", "transformers"):
                with self.subTest(engine=engine, arrival=arrival):
                    run = self.read(f"{engine}-{arrival}.json")[0]
                    self.assertNotIn("error", run)
                    self.assertEqual((run["requests_total"], run["completed"], run["failed"]), (REQUESTS, REQUESTS, 0))
                    self.assertEqual(run["output_tokens"], REQUESTS * OUTPUT_LEN)
                    self.assertEqual([r["index"] for r in run["requests"]], list(range(REQUESTS)))
                    for r in run["requests"]:
                        self.assertEqual(r["output_tokens"], OUTPUT_LEN)
                        self.assertEqual(len(r["token_times_s"]), OUTPUT_LEN)
                        self.assertEqual(r["finish_reason"], "length")
            hf = self.read(f"transformers-{arrival}.json")[0]
            for r in hf["requests"]:
                self.assertEqual(len(r["tokens"]), OUTPUT_LEN)
                self.assertTrue(all(0 <= t < 32000 for t in r["tokens"]))
            self.assertEqual(sorted(i for b in hf["batches"] for i in b["requests"]), list(range(REQUESTS)))
        greedy = self.flover_greedy()
        self.assertEqual(len(greedy), REQUESTS)
        for g in greedy:
            self.assertEqual((g["completion_tokens"], len(g["tokens"])), (OUTPUT_LEN, OUTPUT_LEN))

    def test_greedy_tokens_are_identical_in_fp32(self):
        flover = [g["tokens"] for g in self.flover_greedy()]
        for arrival in ARRIVALS:
            hf = [r["tokens"] for r in self.read(f"transformers-{arrival}.json")[0]["requests"]]
            self.assertEqual(flover[0], hf[0], f"request 0, {arrival} arrivals")
            self.assertEqual(flover, hf, f"{arrival} arrivals")
        self.assertGreater(len(set(flover[0])), 2, "degenerate continuation: the check would be weak")
        greedy = self.read("comparison.json")["greedy"]
        self.assertEqual((greedy["identical_requests"], greedy["requests"]), (REQUESTS, REQUESTS))
        self.assertTrue(greedy["request0_identical"])

    def test_flover_text_is_transformers_decoding(self):
        greedy = self.flover_greedy()
        script = ("import json, sys\nfrom transformers import AutoTokenizer\n"
                  "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
                  "print(json.dumps([t.decode(ids) for ids in json.loads(sys.argv[2])]))")
        decoded = subprocess.run([self.python, "-c", script, self.model, json.dumps([g["tokens"] for g in greedy])],
                                 capture_output=True, text=True, check=True)
        texts = json.loads(decoded.stdout)
        # A continuation's text keeps the leading space that decoding the tokens alone strips.
        self.assertEqual([g["text"].removeprefix(" ") for g in greedy], texts)

    def test_both_reports_describe_the_same_workload(self):
        workload = self.read("workload.json")
        for arrival in ARRIVALS:
            flover = self.read(f"flover-{arrival}.json")[0]
            hf = self.read(f"transformers-{arrival}.json")[0]
            for key in ("requests", "arrival", "interval_ms", "seed", "output_len_min", "output_len_max",
                        "ignore_eos", "max_concurrency", "prompt_len", "vocab_size"):
                self.assertEqual(flover["workload"][key], hf["workload"][key], f"{arrival}: workload.{key}")
            self.assertEqual(hf["workload"]["arrival"], arrival)
            # flover bench's arrival times, reproduced by hf_serving_bench.py's generator.
            self.assertEqual([r["arrival_s"] for r in flover["requests"]], [r["arrival_s"] for r in hf["requests"]])
            self.assertEqual([r["prompt_tokens"] for r in flover["requests"]],
                             [len(r["prompt_ids"]) for r in workload])
        for r in workload:   # flover bench's random prompts: 8 ids in [3, vocab)
            self.assertEqual(len(r["prompt_ids"]), 8)
            self.assertTrue(all(3 <= t < 32000 for t in r["prompt_ids"]))
        poisson = [r["arrival_s"] for r in self.read("transformers-poisson.json")[0]["requests"]]
        self.assertNotEqual(poisson, [i * 0.02 for i in range(REQUESTS)])

    def test_reports_are_well_formed(self):
        for arrival in ARRIVALS:
            for engine in ("flover", "transformers"):
                run = self.read(f"{engine}-{arrival}.json")[0]
                for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
                    with self.subTest(engine=engine, arrival=arrival, stat=key):
                        s = run[key]
                        self.assertEqual(set(s), {"n", "mean", "p50", "p90", "p99"})
                        self.assertTrue(all(math.isfinite(s[k]) and s[k] >= 0 for k in ("mean", "p50", "p90", "p99")))
                        self.assertLessEqual(s["p50"], s["p90"])
                        self.assertLessEqual(s["p90"], s["p99"])
                for key in ("overall_latency_s", "single_latency_s", "output_tokens_per_s", "request_throughput"):
                    self.assertTrue(math.isfinite(run[key]) and run[key] > 0, f"{engine} {arrival}: {key}")
                for r in run["requests"]:
                    self.assertLessEqual(r["arrival_s"], r["first_token_s"])
                    self.assertLessEqual(r["first_token_s"], r["done_s"])
        comparison = self.read("comparison.json")
        text = open(os.path.join(self.out, "comparison.txt")).read()
        for arrival in ARRIVALS:
            c = comparison["runs"][arrival]
            self.assertTrue(c["same_arrival_times"])
            self.assertAlmostEqual(c["ratio"], c["flover_tokens_per_s"] / c["transformers_tokens_per_s"])
            self.assertIn(f"{arrival} arrivals", text)
            self.assertIn(f"Flover / transformers = {c['ratio']:.2f}x", text)
        self.assertIn(f"greedy tokens: {REQUESTS}/{REQUESTS} requests identical", text)


if __name__ == "__main__":
    HfSideBySide.python = venv_python()
    unittest.main()
