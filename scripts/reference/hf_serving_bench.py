#!/usr/bin/env python3
"""`flover bench`'s workload served by Hugging Face transformers, the way transformers
users serve it: static batching with model.generate.

Serving: the requests that have arrived (at most --max-concurrency) are batched
together, left-padded, and generated greedily as one model.generate call; a batch runs
to completion before the next batch starts, so a request arriving during a batch waits
for it to finish. With --ignore-eos (the paper's workload) EOS is not a stop token, as
in Flover with --ignore-eos, and min_new_tokens = max_new_tokens guards it, so every
request generates exactly --output-len tokens (checked). transformers' defaults
otherwise: its default attention implementation (--attn-implementation changes it),
its dynamic KV cache, no torch.compile.

Workload: `flover bench`'s (client/bench/bench_workload.h), reimplemented here with the
same generator (SplitMix64), so the same flags and --seed give the same arrival times
and the same random prompt token ids: --requests N; --interval-ms MS (fixed gaps, 0 = all
at once), --mean-interval-ms MS or --rate R (Poisson); --prompt-len N or A:B;
--output-len N; --max-concurrency C (the largest batch; 0 = no limit).

Measurement, as `flover bench` defines it (client/bench/bench_metrics.h), on this
process's clock from the start of the workload: a request's submit time is its arrival;
TTFT = first token - arrival, the first token being the batch's prefill result (timed
by a streamer, when generate hands it the step's tokens on the host); e2e = the end of
its batch's generate - arrival; TPOT = (e2e - TTFT) / (n - 1); ITL the gaps between a
request's token times; overall latency = first arrival -> last completion; tokens/s =
output tokens / overall latency. Before the workload: one 2-token warm-up generate,
then the first request alone (the "single" latency, as flover bench measures it).

Output: a table on stdout; with --json FILE, a JSON array with one run shaped like
`flover bench --json`'s (the same keys for the workload and the statistics, per-request
timelines under "requests"), plus each request's generated token ids ("tokens"), the
batches, and the engine's versions.

Usage:
  hf_serving_bench.py --model DIR [--device cuda|cpu] [--dtype float16|bfloat16|float32]
      --requests 32 --mean-interval-ms 20 --output-len 256 --ignore-eos
      --max-concurrency 32 [--seed 0] [--prompt-len 8] [--json FILE] [--print-workload]
Needs torch and transformers (4.44 and 5.x work).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

MASK64 = (1 << 64) - 1
FIRST_RANDOM_TOKEN = 3   # flover bench's kFirstRandomToken: ids 0..2 are <unk>, BOS, EOS
ARRIVAL_STREAM = 0x61727269766c7331
PROMPT_STREAM = 0x70726f6d70747331
LENGTH_STREAM = 0x6c656e6774687331
PROMPT_LENGTH_STREAM = 0x706c656e67746831


class WorkloadRng:
    """flover::WorkloadRng: SplitMix64, rejection-sampled integers, (0, 1] doubles."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform_int(self, lo, hi):
        span = hi - lo + 1
        limit = MASK64 - MASK64 % span
        x = self.next()
        while x >= limit:
            x = self.next()
        return lo + x % span

    def uniform01(self):
        return ((self.next() >> 11) + 1) * 2.0 ** -53

    def exponential(self, mean):
        return -mean * math.log(self.uniform01())


def generate_workload(n, poisson, interval_ms, seed, prompt_min, prompt_max, output_len, vocab_size):
    """flover::GenerateWorkload for random prompts and a fixed output length: a list of
    {index, arrival_s, prompt_ids, output_len} in arrival order."""
    arrivals = WorkloadRng(seed ^ ARRIVAL_STREAM)
    prompts = WorkloadRng(seed ^ PROMPT_STREAM)
    lengths = WorkloadRng(seed ^ LENGTH_STREAM)
    prompt_lengths = WorkloadRng(seed ^ PROMPT_LENGTH_STREAM)
    requests, t_ms = [], 0.0
    for i in range(n):
        if i > 0:
            t_ms += arrivals.exponential(interval_ms) if poisson else interval_ms
        length = prompt_min if prompt_min == prompt_max else prompt_lengths.uniform_int(prompt_min, prompt_max)
        ids = [prompts.uniform_int(FIRST_RANDOM_TOKEN, vocab_size - 1) for _ in range(length)]
        requests.append({'index': i, 'arrival_s': t_ms / 1000.0, 'prompt_ids': ids,
                         'output_len': lengths.uniform_int(output_len, output_len)})
    return requests


def parse_len(flag, text):
    parts = text.split(':')
    try:
        lo, hi = int(parts[0]), int(parts[-1])
    except ValueError:
        raise SystemExit(f'{flag} {text}: expected a token count N >= 1 or a range A:B')
    if len(parts) > 2 or lo < 1 or hi < lo:
        raise SystemExit(f'{flag} {text}: expected a token count N >= 1 or a range A:B with A <= B')
    return lo, hi


def stats(values):
    """flover::LatencyStats: n, mean, p50, p90, p99 (linear interpolation, numpy's default)."""
    v = sorted(values)
    if not v:
        return {'n': 0, 'mean': 0.0, 'p50': 0.0, 'p90': 0.0, 'p99': 0.0}

    def pct(p):
        x = p / 100 * (len(v) - 1)
        lo = math.floor(x)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (x - lo)
    return {'n': len(v), 'mean': sum(v) / len(v), 'p50': pct(50), 'p90': pct(90), 'p99': pct(99)}


class Engine:
    """One transformers model on one device, generating batches greedily."""

    def __init__(self, args):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, GenerationConfig
        from transformers.generation.streamers import BaseStreamer
        self.torch = torch
        self.device = torch.device(args.device)
        dtype = {'float16': torch.float16, 'bfloat16': torch.bfloat16, 'float32': torch.float32}[args.dtype]
        version = tuple(int(x) for x in transformers.__version__.split('.')[:2])
        kwargs = {'dtype' if version >= (4, 56) else 'torch_dtype': dtype}
        if args.attn_implementation:
            kwargs['attn_implementation'] = args.attn_implementation
        start = time.perf_counter()
        try:   # straight onto the device (needs accelerate in transformers 4)
            model = AutoModelForCausalLM.from_pretrained(args.model, device_map=args.device, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure: load on the host, then move
            print(f'hf_serving_bench: loading with device_map={args.device} failed ({e}); '
                  f'loading on the host and moving the model', file=sys.stderr)
            model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).to(self.device)
        self.model = model.eval()
        self.load_s = time.perf_counter() - start
        cfg = self.model.config
        self.bos = cfg.bos_token_id if cfg.bos_token_id is not None else 1
        self.vocab_size = cfg.vocab_size
        # generate() falls back to the model's generation config for what the one passed
        # leaves unset (its eos_token_id among them): that one must name no EOS either.
        if args.ignore_eos:
            self.model.generation_config = GenerationConfig(bos_token_id=self.bos)
        self.eos = None if args.ignore_eos else cfg.eos_token_id
        self.ignore_eos = args.ignore_eos
        self.GenerationConfig = GenerationConfig
        self.info = {'engine': 'transformers', 'transformers': transformers.__version__,
                     'torch': torch.__version__, 'device': self.device_name(), 'dtype': args.dtype,
                     'attn_implementation': getattr(cfg, '_attn_implementation', None),
                     'load_s': self.load_s}

        class TimingStreamer(BaseStreamer):
            """Times each step's tokens as generate() hands them over on the host (the
            copy waits for the step): put() gets the prompt ([batch, len]) first, then
            each step's new tokens ([batch])."""

            def __init__(self):
                self.times = []

            def put(self, value):
                if value.dim() == 1:
                    self.times.append(time.perf_counter())

            def end(self):
                pass
        self.Streamer = TimingStreamer

    def device_name(self):
        if self.device.type == 'cuda':
            return self.torch.cuda.get_device_name(self.device)
        return self.device.type

    def sync(self):
        if self.device.type == 'cuda':
            self.torch.cuda.synchronize(self.device)

    def generate(self, prompts, n_new):
        """Greedy continuations of `prompts` (lists of ids), left-padded into one batch.
        Returns (new token ids per prompt, host times of each step's tokens)."""
        torch = self.torch
        width = max(len(p) for p in prompts)
        pad = 0
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
        cfg = self.GenerationConfig(do_sample=False, max_new_tokens=n_new,
                                    min_new_tokens=n_new if self.ignore_eos else 0,
                                    eos_token_id=self.eos, pad_token_id=pad, bos_token_id=self.bos)
        streamer = self.Streamer()
        out = self.model.generate(ids.to(self.device), attention_mask=mask.to(self.device),
                                  generation_config=cfg, streamer=streamer)
        self.sync()
        new = out[:, width:].tolist()
        return new, streamer.times


def serve(engine, requests, max_batch, t0):
    """Static batching: returns per-request timelines and the batches."""
    pending = list(requests)
    timelines, batches = {}, []
    while pending:
        now = time.perf_counter() - t0
        if pending[0]['arrival_s'] > now:
            time.sleep(pending[0]['arrival_s'] - now)
            continue
        batch = [r for r in pending if r['arrival_s'] <= now]
        if max_batch > 0:
            batch = batch[:max_batch]
        taken = {r['index'] for r in batch}
        pending = [r for r in pending if r['index'] not in taken]
        n_new = max(r['output_len'] for r in batch)
        start = time.perf_counter() - t0
        new, times = engine.generate([r['prompt_ids'] for r in batch], n_new)
        end = time.perf_counter() - t0
        times = [t - t0 for t in times]
        batches.append({'start_s': start, 'end_s': end, 'size': len(batch),
                        'requests': [r['index'] for r in batch]})
        for r, tokens in zip(batch, new):
            timelines[r['index']] = {
                'index': r['index'], 'arrival_s': r['arrival_s'], 'submit_s': r['arrival_s'],
                'batch_start_s': start, 'first_token_s': times[0] if times else None, 'done_s': end,
                'prompt_tokens': len(r['prompt_ids']), 'output_tokens': len(tokens),
                'finish_reason': 'length', 'token_times_s': times[:len(tokens)], 'tokens': tokens}
    return [timelines[r['index']] for r in requests], batches


def metrics(timelines, single_latency_s):
    """flover::ComputeMetrics over completed timelines."""
    done = [t for t in timelines if t['done_s'] is not None]
    first_submit = min(t['submit_s'] for t in timelines)
    overall = max(t['done_s'] for t in done) - first_submit if done else 0.0
    e2e = [t['done_s'] - t['submit_s'] for t in done]
    ttft = [(t['first_token_s'] if t['first_token_s'] is not None else t['done_s']) - t['submit_s'] for t in done]
    tpot = [(e - f) / (t['output_tokens'] - 1) for t, e, f in zip(done, e2e, ttft) if t['output_tokens'] >= 2]
    itl = [b - a for t in done for a, b in zip(t['token_times_s'], t['token_times_s'][1:])]
    out_tokens = sum(t['output_tokens'] for t in done)
    avg = sum(e2e) / len(e2e) if e2e else 0.0
    return {'requests_total': len(timelines), 'completed': len(done), 'failed': len(timelines) - len(done),
            'overall_latency_s': overall, 'single_latency_s': single_latency_s, 'avg_latency_s': avg,
            'avg_over_single': avg / single_latency_s if single_latency_s > 0 else 0.0,
            'request_throughput': len(done) / overall if overall > 0 else 0.0,
            'output_tokens': out_tokens, 'output_tokens_per_s': out_tokens / overall if overall > 0 else 0.0,
            'ttft_s': stats(ttft), 'tpot_s': stats(tpot), 'itl_s': stats(itl), 'e2e_s': stats(e2e)}


def table(run):
    ms = lambda s: f'{s * 1e3:.1f}'   # noqa: E731
    lines = [f"transformers static batching ({run['engine']['device']}, {run['engine']['dtype']}): "
             f"{run['completed']}/{run['requests_total']} requests in {len(run['batches'])} batches "
             f"(sizes {', '.join(str(b['size']) for b in run['batches'])})",
             f"  overall {run['overall_latency_s']:.3f} s, {run['output_tokens']} tokens, "
             f"{run['output_tokens_per_s']:.1f} tokens/s, {run['request_throughput']:.2f} requests/s, "
             f"single {run['single_latency_s']:.3f} s, avg/single {run['avg_over_single']:.2f}",
             '  ms          mean      p50      p90      p99']
    for key, name in (('ttft_s', 'TTFT'), ('tpot_s', 'TPOT'), ('itl_s', 'ITL'), ('e2e_s', 'e2e')):
        s = run[key]
        lines.append(f"  {name:<8}" + ''.join(f'{ms(s[k]):>9}' for k in ('mean', 'p50', 'p90', 'p99')))
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--model', required=True, help='a Hugging Face model folder')
    ap.add_argument('--device', default='cuda', help='cuda, cuda:N or cpu')
    ap.add_argument('--dtype', default='float16', choices=['float16', 'bfloat16', 'float32'])
    ap.add_argument('--attn-implementation', help="e.g. eager, sdpa; default: transformers' own")
    ap.add_argument('--label', default='transformers-static')
    ap.add_argument('--requests', type=int, default=16)
    arrival = ap.add_mutually_exclusive_group()
    arrival.add_argument('--interval-ms', type=float, help='fixed gap between arrivals (0 = all at once; the default)')
    arrival.add_argument('--rate', type=float, help='Poisson arrivals, requests per second')
    arrival.add_argument('--mean-interval-ms', type=float, help='Poisson arrivals, mean gap in ms')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--prompt-len', default='8', help='random prompt token ids per request: N, or A:B')
    ap.add_argument('--output-len', type=int, default=128)
    ap.add_argument('--ignore-eos', action='store_true', help='generate exactly --output-len tokens')
    ap.add_argument('--max-concurrency', type=int, default=0, help='the largest batch (0 = no limit)')
    ap.add_argument('--json', help='write the run (a one-element array, as flover bench --json) here')
    ap.add_argument('--print-workload', action='store_true',
                    help="print the workload's requests as JSON and exit (no model is loaded: the "
                         "vocabulary size is read from the folder's config.json)")
    args = ap.parse_args()
    if args.requests < 1 or args.output_len < 1 or args.max_concurrency < 0:
        ap.error('--requests and --output-len must be >= 1, --max-concurrency >= 0')
    poisson = args.rate is not None or args.mean_interval_ms is not None
    interval_ms = (1000.0 / args.rate if args.rate else args.mean_interval_ms) if poisson else (args.interval_ms or 0.0)
    if poisson and not (interval_ms and interval_ms > 0):
        ap.error('Poisson arrivals need a mean interval > 0 (--rate R or --mean-interval-ms M)')
    if interval_ms < 0:
        ap.error('--interval-ms must be >= 0')
    prompt_min, prompt_max = parse_len('--prompt-len', args.prompt_len)
    if args.print_workload:
        vocab_size = json.loads((Path(args.model) / 'config.json').read_text())['vocab_size']
        print(json.dumps(generate_workload(args.requests, poisson, interval_ms, args.seed, prompt_min, prompt_max,
                                           args.output_len, vocab_size)))
        return

    engine = Engine(args)
    requests = generate_workload(args.requests, poisson, interval_ms, args.seed, prompt_min, prompt_max,
                                 args.output_len, engine.vocab_size)
    print(f"transformers {engine.info['transformers']}, torch {engine.info['torch']}, "
          f"{engine.info['device']}, {args.dtype}, loaded in {engine.load_s:.1f} s", file=sys.stderr)
    engine.generate([requests[0]['prompt_ids']], 2)   # warm-up
    start = time.perf_counter()
    _, _ = engine.generate([requests[0]['prompt_ids']], requests[0]['output_len'])
    single_latency_s = time.perf_counter() - start
    t0 = time.perf_counter()
    timelines, batches = serve(engine, requests, args.max_concurrency, t0)
    short = [t['index'] for t, r in zip(timelines, requests) if args.ignore_eos and t['output_tokens'] != r['output_len']]
    if short:
        raise SystemExit(f'hf_serving_bench: requests {short} did not generate exactly --output-len tokens')
    workload = {'requests': args.requests, 'arrival': 'poisson' if poisson else 'fixed', 'interval_ms': interval_ms,
                'seed': args.seed, 'output_len_min': args.output_len, 'output_len_max': args.output_len,
                'ignore_eos': args.ignore_eos, 'max_concurrency': args.max_concurrency,
                'prompt_len_min': prompt_min, 'prompt_len_max': prompt_max, 'vocab_size': engine.vocab_size}
    if poisson:
        workload['rate'] = 1000.0 / interval_ms
    if prompt_min == prompt_max:
        workload['prompt_len'] = prompt_min
    run = {'policy': args.label, 'api': 'transformers', 'model': str(Path(args.model)), 'workload': workload,
           **metrics(timelines, single_latency_s), 'engine': engine.info, 'batches': batches,
           'requests': timelines}
    print(table(run))
    if args.json:
        Path(args.json).write_text(json.dumps([run], indent=1) + '\n')


if __name__ == '__main__':
    main()
