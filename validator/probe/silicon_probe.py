#!/usr/bin/env python3
"""The silicon probe: time a catalogue model's forward passes on the local device.

Builds a decoder of the model's shape with random weights (nothing is downloaded), times decode steps,
prefills and mixed (chunked-prefill) iterations, and writes the table `servesim calibrate --silicon`
reads, in the format of fixtures/silicon/h200-qwen2.5-7b-forward.json (its `method` says what is
timed). On a GPU every pass is captured in a CUDA graph and replayed, timed with CUDA events; on the
CPU it runs op by op, timed with time.perf_counter, and the sanity kernels are scaled down.

    python3 validator/probe/silicon_probe.py --model qwen2.5-7b-instruct --device cuda \\
        --out fixtures/silicon/my-gpu-qwen2.5-7b-forward.json
    python3 validator/probe/silicon_probe.py --tiny --device cpu --out /tmp/tiny.json   # seconds, for CI

Exit status: 0 on success, 2 for a model shape the probe does not support (MoE, sliding window, ...)
or bad arguments, 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "models" / "catalogue" / "llms"

# Defaults: the grid of the shared H200 table.
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
CONTEXTS = [128, 1024, 4096]
PREFILL_TOKENS = [16, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
MIXED = ["256x32x1024", "512x32x1024", "2048x32x1024", "512x128x1024", "2048x128x1024",
         "1792x256x1024", "7936x256x1024"]
# --tiny: a 2-layer model a CPU runs in seconds.
TINY_SHAPE = dict(hidden=256, inter=512, layers=2, heads=4, kv=2, hd=64, vocab=4096, bias=True)
TINY_GRID = dict(batches=[1, 2, 4], contexts=[16, 64], prefill_tokens=[16, 64],
                 mixed=["32x2x64"], reps=5, prefill_reps=3, eager_reps=2)


class Unsupported(Exception):
    """A model shape this probe cannot build (it says which and why)."""


@dataclass
class Shape:
    hidden: int
    inter: int
    layers: int
    heads: int
    kv: int
    hd: int
    vocab: int
    bias: bool
    tied: bool = False


# ---------------------------------------------------------------------------------------------------
# Model shapes: the catalogue's TOML or a Hugging Face config.json.

# Keys that mean a mixture of experts or another architecture the dense decoder here is not.
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size",
            "num_experts_per_tok", "experts")
DENSE_HF_TYPES = {"llama", "qwen2", "mistral", "qwen3"}


def catalogue_names() -> list[str]:
    return sorted(p.stem for p in CATALOGUE.glob("*.toml"))


def shape_from_catalogue(name: str) -> tuple[Shape, str]:
    """The shape of catalogue model `name` (file stem, `name` key, or a unique prefix of either)."""
    path = Path(name)
    if not (path.suffix == ".toml" and path.is_file()):
        entries = {}
        for p in CATALOGUE.glob("*.toml"):
            with open(p, "rb") as f:
                entries[p.stem] = (p, tomllib.load(f))
        hits = [s for s, (_, t) in entries.items() if name in (s, t.get("name"))]
        if not hits:
            hits = [s for s, (_, t) in entries.items()
                    if s.startswith(name) or str(t.get("name", "")).startswith(name)]
        if len(hits) != 1:
            print(f"silicon_probe: --model {name!r} matches {len(hits)} catalogue models "
                  f"(catalogue: {', '.join(catalogue_names())})", file=sys.stderr)
            raise SystemExit(2)
        path = entries[hits[0]][0]
    with open(path, "rb") as f:
        t = tomllib.load(f)
    moe = [k for k in MOE_KEYS if t.get(k)]
    if moe:
        raise Unsupported(f"{path.name}: a mixture of experts ({', '.join(moe)}); the probe builds "
                          "dense decoders only")
    required = ["hidden_size", "intermediate_size", "num_layers", "num_attention_heads",
                "num_kv_heads", "head_dim", "vocab_size"]
    missing = [k for k in required if k not in t]
    if missing:
        raise Unsupported(f"{path.name}: no {', '.join(missing)}; not a dense decoder the probe knows")
    hf = str(t.get("hf_id", "")).lower()
    shape = Shape(hidden=t["hidden_size"], inter=t["intermediate_size"], layers=t["num_layers"],
                  heads=t["num_attention_heads"], kv=t["num_kv_heads"], hd=t["head_dim"],
                  vocab=t["vocab_size"],
                  # The catalogue does not record it: Qwen2 / Qwen2.5 have a QKV bias, Llama and
                  # Mistral none (--bias / --no-bias override).
                  bias="qwen2" in hf or "qwen2" in str(t.get("name", "")),
                  tied=bool(t.get("tie_word_embeddings", False)))
    return shape, str(t.get("name", path.stem))


def shape_from_hf_config(path: str) -> tuple[Shape, str]:
    with open(path) as f:
        c = json.load(f)
    c = c.get("text_config", c)
    moe = [k for k in MOE_KEYS if c.get(k)]
    if moe:
        raise Unsupported(f"{path}: a mixture of experts ({', '.join(moe)}); the probe builds dense "
                          "decoders only")
    mt = c.get("model_type", "?")
    if mt not in DENSE_HF_TYPES:
        raise Unsupported(f"{path}: model_type {mt!r}; the probe builds {sorted(DENSE_HF_TYPES)} "
                          "(GQA attention, gated SiLU MLP, RMSNorm)")
    if c.get("hidden_act", "silu") != "silu":
        raise Unsupported(f"{path}: hidden_act {c['hidden_act']!r}; the probe's MLP is SiLU-gated")
    if c.get("use_sliding_window") and c.get("sliding_window"):
        raise Unsupported(f"{path}: sliding-window attention is not modelled")
    heads = c["num_attention_heads"]
    shape = Shape(hidden=c["hidden_size"], inter=c["intermediate_size"],
                  layers=c["num_hidden_layers"], heads=heads,
                  kv=c.get("num_key_value_heads", heads),
                  hd=c.get("head_dim") or c["hidden_size"] // heads, vocab=c["vocab_size"],
                  bias=bool(c.get("attention_bias", mt == "qwen2")),
                  tied=bool(c.get("tie_word_embeddings", False)))
    name = c.get("_name_or_path") or Path(path).resolve().parent.name
    return shape, str(name)


def check_shape(s: Shape) -> None:
    if min(s.hidden, s.inter, s.layers, s.heads, s.kv, s.hd, s.vocab) <= 0:
        raise Unsupported(f"every dimension must be positive: {s}")
    if s.heads % s.kv:
        raise Unsupported(f"{s.heads} query heads do not group evenly over {s.kv} KV heads")


# ---------------------------------------------------------------------------------------------------
# Timing.

def stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "reps": len(times)}


class Timer:
    """Runs a pass repeatedly and returns per-run seconds: a CUDA graph replayed and timed with CUDA
    events on a GPU, op by op with perf_counter on the CPU."""

    def __init__(self, torch, device: str, warmup: int):
        self.torch, self.device, self.warmup = torch, device, warmup

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def eager(self, fn, reps: int) -> list[float]:
        torch = self.torch
        for _ in range(self.warmup):
            fn()
        self.sync()
        out = []
        for _ in range(reps):
            if self.device == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        return out

    def graph(self, fn, reps: int) -> list[float]:
        """The main figure: a CUDA graph on a GPU, the same as eager on the CPU."""
        if self.device != "cuda":
            return self.eager(fn, reps)
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        try:
            return self.eager(g.replay, reps)
        finally:
            del g


# ---------------------------------------------------------------------------------------------------
# The decoder.

class Decoder:
    def __init__(self, torch, shape: Shape, device: str, dtype, seed: int):
        self.torch, self.s, self.device, self.dtype = torch, shape, device, dtype
        F = torch.nn.functional
        self.F = F
        s = shape
        g = torch.Generator(device=device)
        g.manual_seed(seed)

        def w(*dims, scale=0.02):
            t = torch.empty(*dims, device=device, dtype=dtype)
            t.normal_(0.0, scale, generator=g)
            return t

        qkv = (s.heads + 2 * s.kv) * s.hd
        self.layers = []
        for _ in range(s.layers):
            self.layers.append(dict(
                ln1=torch.ones(s.hidden, device=device, dtype=dtype),
                qkv_w=w(qkv, s.hidden),
                qkv_b=w(qkv) if s.bias else None,
                o_w=w(s.hidden, s.heads * s.hd),
                ln2=torch.ones(s.hidden, device=device, dtype=dtype),
                gate_up_w=w(2 * s.inter, s.hidden),
                down_w=w(s.hidden, s.inter),
            ))
        self.embed = w(s.vocab, s.hidden)
        self.norm = torch.ones(s.hidden, device=device, dtype=dtype)
        self.lm_head = self.embed if s.tied else w(s.vocab, s.hidden)
        self.eps = 1e-6

    def params(self) -> int:
        n = sum(t.numel() for L in self.layers for t in L.values() if t is not None)
        n += self.embed.numel() + self.norm.numel()
        if not self.s.tied:
            n += self.lm_head.numel()
        return n

    def kv_bytes_per_token(self) -> int:
        return 2 * self.s.layers * self.s.kv * self.s.hd * self.torch.finfo(self.dtype).bits // 8

    def rms(self, x, w):
        return self.F.rms_norm(x, (self.s.hidden,), w, self.eps)

    def cache(self, batch: int, length: int):
        """A dense KV cache: per layer K and V of [batch, kv heads, length, head dim]."""
        torch, s = self.torch, self.s
        return [(torch.zeros(batch, s.kv, length, s.hd, device=self.device, dtype=self.dtype),
                 torch.zeros(batch, s.kv, length, s.hd, device=self.device, dtype=self.dtype))
                for _ in range(s.layers)]

    def _qkv(self, L, h):
        s = self.s
        qkv = self.F.linear(h, L["qkv_w"], L["qkv_b"])
        return qkv.split([s.heads * s.hd, s.kv * s.hd, s.kv * s.hd], dim=-1)

    def _decode_attn(self, q, k, v, kc, vc, pos: int):
        """B decodes: K/V written at `pos`, SDPA over pos+1 keys; the G query heads of each KV head
        ride in the query axis (no KV copy for GQA)."""
        s = self.s
        B = q.shape[0]
        kc[:, :, pos] = k.view(B, s.kv, s.hd)
        vc[:, :, pos] = v.view(B, s.kv, s.hd)
        qg = q.view(B, s.kv, s.heads // s.kv, s.hd)
        a = self.F.scaled_dot_product_attention(qg, kc[:, :, : pos + 1], vc[:, :, : pos + 1])
        return a.reshape(B, s.heads * s.hd)

    def _prefill_attn(self, q, k, v, kc, vc):
        """One fresh prompt of T tokens: K/V written to the cache, causal SDPA with native GQA."""
        s = self.s
        T = q.shape[0]
        kh = k.view(T, s.kv, s.hd).transpose(0, 1)
        vh = v.view(T, s.kv, s.hd).transpose(0, 1)
        kc[0, :, :T] = kh
        vc[0, :, :T] = vh
        qh = q.view(T, s.heads, s.hd).transpose(0, 1)
        a = self.F.scaled_dot_product_attention(qh.unsqueeze(0), kc[:, :, :T], vc[:, :, :T],
                                                is_causal=True, enable_gqa=True)
        return a[0].transpose(0, 1).reshape(T, s.heads * s.hd)

    def _mlp(self, L, x):
        h = self.rms(x, L["ln2"])
        gate, up = self.F.linear(h, L["gate_up_w"]).chunk(2, dim=-1)
        return x + self.F.linear(self.F.silu(gate) * up, L["down_w"])

    def _head(self, x):
        return self.F.linear(self.rms(x, self.norm), self.lm_head).argmax(dim=-1)

    def decode(self, tokens, cache, pos: int):
        x = self.F.embedding(tokens, self.embed)
        for L, (kc, vc) in zip(self.layers, cache):
            q, k, v = self._qkv(L, self.rms(x, L["ln1"]))
            x = x + self.F.linear(self._decode_attn(q, k, v, kc, vc, pos), L["o_w"])
            x = self._mlp(L, x)
        return self._head(x)

    def prefill(self, tokens, cache):
        x = self.F.embedding(tokens, self.embed)
        for L, (kc, vc) in zip(self.layers, cache):
            q, k, v = self._qkv(L, self.rms(x, L["ln1"]))
            x = x + self.F.linear(self._prefill_attn(q, k, v, kc, vc), L["o_w"])
            x = self._mlp(L, x)
        return self._head(x[-1:])

    def mixed(self, tokens, chunk: int, pcache, dcache, pos: int):
        """A chunk of `chunk` prompt tokens and B decodes share the GEMMs (rows concatenated: chunk
        first); attention runs separately for each part; the LM head covers the chunk's last token and
        the B decodes."""
        torch = self.torch
        x = self.F.embedding(tokens, self.embed)
        for L, (pk, pv), (dk, dv) in zip(self.layers, pcache, dcache):
            q, k, v = self._qkv(L, self.rms(x, L["ln1"]))
            ap = self._prefill_attn(q[:chunk], k[:chunk], v[:chunk], pk, pv)
            ad = self._decode_attn(q[chunk:], k[chunk:], v[chunk:], dk, dv, pos)
            x = x + self.F.linear(torch.cat([ap, ad]), L["o_w"])
            x = self._mlp(L, x)
        return self._head(x[chunk - 1:])


# ---------------------------------------------------------------------------------------------------
# Sanity kernels: what the device reaches on a copy, a square GEMM and streaming matvecs.

def sanity(torch, device: str, dtype, timer: Timer, reps: int) -> tuple[dict, str]:
    gpu = device == "cuda"
    copy_bytes = (1 << 30) if gpu else (64 << 20)
    n = 8192 if gpu else 1024
    gemv_n, gemv_k = (8192, 16) if gpu else (2048, 16)
    elt = torch.finfo(dtype).bits // 8
    out = {}
    src = torch.empty(copy_bytes // elt, device=device, dtype=dtype).normal_()
    dst = torch.empty_like(src)
    t = timer.graph(lambda: dst.copy_(src), reps)
    out["copy_1GiB"] = {**stats(t), "rw_bytes_per_s": 2 * copy_bytes / statistics.median(t)}
    del src, dst
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = timer.graph(lambda: a @ b, reps)
    out["gemm_8192"] = {**stats(t), "flops_per_s": 2 * n**3 / statistics.median(t)}
    del a, b
    ws = [torch.randn(gemv_n, gemv_n, device=device, dtype=dtype) for _ in range(gemv_k)]
    x = torch.randn(1, gemv_n, device=device, dtype=dtype)

    def gemv():
        for w in ws:
            x @ w

    t = timer.graph(gemv, reps)
    out["gemv_stream_2GiB"] = {**stats(t),
                               "bytes_per_s": gemv_k * gemv_n * gemv_n * elt / statistics.median(t)}
    del ws, x
    how = ("" if gpu else
           f" On the CPU the sizes are scaled down but the keys kept: copy_1GiB copies {copy_bytes >> 20} "
           f"MiB, gemm_8192 is {n}^3, gemv_stream_2GiB is {gemv_k} x [1,{gemv_n}]x[{gemv_n},{gemv_n}].")
    return out, how


# ---------------------------------------------------------------------------------------------------

def device_name(torch, device: str) -> tuple[str, int]:
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        return p.name, p.multi_processor_count
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {name}", torch.get_num_threads()


def parse_ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not vals or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def parse_mixed(text: str) -> tuple[int, int, int]:
    try:
        c, b, x = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mixed wants CHUNKxBATCHxCONTEXT, got {text!r}")
    if min(c, b, x) <= 0:
        raise argparse.ArgumentTypeError(f"--mixed wants positive numbers, got {text!r}")
    return c, b, x


def args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time forward passes of a catalogue model (random weights) on this device and "
                    "write the silicon table `servesim calibrate --silicon` reads.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="catalogue model (models/catalogue/llms/*.toml: file stem, name "
                                     "or unique prefix), or a path to such a TOML")
    src.add_argument("--config", help="a Hugging Face config.json instead of a catalogue model")
    p.add_argument("--tiny", action="store_true",
                   help="a 2-layer toy shape, a small grid and one CPU thread (CI on the CPU, "
                        "seconds); the shape, grid and --threads flags still override it")
    p.add_argument("--label", help="the rows' `model` field (default: the catalogue name, or 'tiny')")
    for dim in ("layers", "hidden", "inter", "heads", "kv-heads", "head-dim", "vocab"):
        p.add_argument(f"--{dim}", type=int, help=f"override the shape's {dim}")
    b = p.add_mutually_exclusive_group()
    b.add_argument("--bias", dest="bias", action="store_true", default=None, help="QKV bias")
    b.add_argument("--no-bias", dest="bias", action="store_false", help="no QKV bias")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                   help="weights, activations and KV cache (default bf16 on cuda, fp32 on cpu)")
    p.add_argument("--batches", type=parse_ints, help=f"decode batch sizes (default {BATCHES})")
    p.add_argument("--contexts", type=parse_ints, help=f"decode contexts (default {CONTEXTS})")
    p.add_argument("--prefill-tokens", type=parse_ints,
                   help=f"prefill prompt lengths (default {PREFILL_TOKENS})")
    p.add_argument("--mixed", type=parse_mixed, action="append",
                   help=f"a mixed iteration CHUNKxBATCHxCONTEXT (repeatable; default {MIXED})")
    p.add_argument("--no-mixed", action="store_true", help="no mixed iterations")
    p.add_argument("--reps", type=int, help="timed decode runs per row (default 20)")
    p.add_argument("--prefill-reps", type=int, help="timed prefill and mixed runs per row (default 10)")
    p.add_argument("--eager-reps", type=int,
                   help="timed op-by-op runs per decode/prefill row (default 3 / 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before each measurement")
    p.add_argument("--memory-fraction", type=float, default=0.9,
                   help="skip a row whose KV cache and activations would exceed this fraction of the "
                        "free device memory (cuda only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (cpu; default torch's own, 1 with --tiny)")
    p.add_argument("--out", required=True, help="the JSON table to write")
    return p


def main(argv: list[str] | None = None) -> int:
    a = args_parser().parse_args(argv)
    try:
        import torch
    except ImportError:
        print("silicon_probe: needs PyTorch (pip install torch)", file=sys.stderr)
        return 1
    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if a.device == "cuda" and not torch.cuda.is_available():
        print("silicon_probe: --device cuda but torch sees no GPU", file=sys.stderr)
        return 2
    # --tiny on the CPU: one thread, steadier on a shared CI machine than several contending ones.
    threads = a.threads or (1 if a.tiny and a.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[
        a.dtype or ("bf16" if a.device == "cuda" else "fp32")]

    try:
        if a.config:
            shape, name = shape_from_hf_config(a.config)
        elif a.model:
            shape, name = shape_from_catalogue(a.model)
        elif a.tiny:
            shape, name = Shape(**TINY_SHAPE), "tiny"
        else:
            print("silicon_probe: give --model NAME, --config config.json or --tiny", file=sys.stderr)
            return 2
        for flag, field in (("layers", "layers"), ("hidden", "hidden"), ("inter", "inter"),
                            ("heads", "heads"), ("kv_heads", "kv"), ("head_dim", "hd"),
                            ("vocab", "vocab")):
            if getattr(a, flag) is not None:
                setattr(shape, field, getattr(a, flag))
        if a.bias is not None:
            shape.bias = a.bias
        check_shape(shape)
    except Unsupported as e:
        print(f"silicon_probe: unsupported model: {e}", file=sys.stderr)
        return 2
    label = a.label or name

    grid = TINY_GRID if a.tiny else {}
    batches = a.batches or grid.get("batches", BATCHES)
    contexts = a.contexts or grid.get("contexts", CONTEXTS)
    prefill_tokens = a.prefill_tokens or grid.get("prefill_tokens", PREFILL_TOKENS)
    mixed = [] if a.no_mixed else (a.mixed or [parse_mixed(m) for m in grid.get("mixed", MIXED)])
    reps = a.reps or grid.get("reps", 20)
    prefill_reps = a.prefill_reps or grid.get("prefill_reps", 10)
    eager_decode = a.eager_reps or grid.get("eager_reps", 3)
    eager_prefill = a.eager_reps or grid.get("eager_reps", 5)
    dev = a.device
    gpu = dev == "cuda"
    timer = Timer(torch, dev, a.warmup)
    log = lambda msg: print(f"[silicon_probe] {msg}", file=sys.stderr, flush=True)
    t_all = time.perf_counter()

    torch.manual_seed(a.seed)
    t = time.perf_counter()
    model = Decoder(torch, shape, dev, dtype, a.seed)
    timer.sync()
    init_s = time.perf_counter() - t
    elt = torch.finfo(dtype).bits // 8
    log(f"{label} on {dev} ({dtype}): {model.params():,} params, built in {init_s:.2f} s")

    def fits(nbytes: int) -> bool:
        if not gpu:
            return True
        free, _ = torch.cuda.mem_get_info()
        return nbytes <= a.memory_fraction * free

    def act_bytes(rows: int) -> int:
        # Generous: a layer's widest activations (gate/up and QKV) for `rows` rows, several times.
        return 8 * rows * (2 * shape.inter + (shape.heads + 2 * shape.kv) * shape.hd) * elt

    def attempt(what, fn):
        try:
            return fn()
        except torch.cuda.OutOfMemoryError if gpu else MemoryError:
            log(f"{what}: out of memory, skipped")
        finally:
            if gpu:
                torch.cuda.empty_cache()
        return None

    def tokens(n):
        return torch.randint(0, shape.vocab, (n,), device=dev)

    decode_rows = []
    for ctx in contexts:
        for B in batches:
            need = B * (ctx + 1) * model.kv_bytes_per_token() + act_bytes(B)
            if not fits(need):
                log(f"decode batch {B} context {ctx}: {need / 2**30:.1f} GiB does not fit, skipped")
                continue

            def run(B=B, ctx=ctx):
                cache = model.cache(B, ctx + 1)
                tok = tokens(B)
                step = lambda: model.decode(tok, cache, ctx)
                g = timer.graph(step, reps)
                e = timer.eager(step, eager_decode)
                return {"model": label, "batch": B, "context": ctx, **stats(g), "eager": stats(e)}

            row = attempt(f"decode batch {B} context {ctx}", run)
            if row:
                decode_rows.append(row)
                log(f"decode batch {B:4d} context {ctx:5d}: {row['median_s'] * 1e3:8.3f} ms "
                    f"(eager {row['eager']['median_s'] * 1e3:.3f} ms)")

    prefill_rows = []
    for T in prefill_tokens:
        need = T * model.kv_bytes_per_token() + act_bytes(T) + shape.heads * T * T * elt
        if not fits(need):
            log(f"prefill {T} tokens: does not fit, skipped")
            continue

        def run(T=T):
            cache = model.cache(1, T)
            tok = tokens(T)
            step = lambda: model.prefill(tok, cache)
            g = timer.graph(step, prefill_reps)
            e = timer.eager(step, eager_prefill)
            return {"model": label, "tokens": T, **stats(g), "eager": stats(e)}

        row = attempt(f"prefill {T} tokens", run)
        if row:
            prefill_rows.append(row)
            log(f"prefill {T:5d} tokens: {row['median_s'] * 1e3:8.3f} ms")

    mixed_rows = []
    for C, B, ctx in mixed:
        need = (C + B * (ctx + 1)) * model.kv_bytes_per_token() + act_bytes(C + B)
        if not fits(need):
            log(f"mixed {C}x{B}x{ctx}: does not fit, skipped")
            continue

        def run(C=C, B=B, ctx=ctx):
            pcache = model.cache(1, C)
            dcache = model.cache(B, ctx + 1)
            tok = tokens(C + B)
            step = lambda: model.mixed(tok, C, pcache, dcache, ctx)
            g = timer.graph(step, prefill_reps)
            return {"model": label, "chunk": C, "batch": B, "context": ctx, **stats(g)}

        row = attempt(f"mixed {C}x{B}x{ctx}", run)
        if row:
            mixed_rows.append(row)
            log(f"mixed chunk {C} + {B} decodes at {ctx}: {row['median_s'] * 1e3:8.3f} ms")

    san, san_note = sanity(torch, dev, dtype, timer, 10)
    device, sm_count = device_name(torch, dev)
    dt = "bf16" if dtype == torch.bfloat16 else "fp32"
    timing = ("Whole step captured in one CUDA graph and replayed (as vLLM does for decode batches); "
              f"median of {reps} replays timed with CUDA events after {a.warmup} warm-ups. `eager` is "
              f"the same step launched op by op (median of {eager_decode})."
              if gpu else
              f"No CUDA graphs on the CPU: the step runs op by op, timed with time.perf_counter; median "
              f"of {reps} after {a.warmup} warm-ups, and `eager` is a second op-by-op measurement "
              f"(median of {eager_decode}).")
    graph = "CUDA graph" if gpu else "op by op"
    gpu_facts = ""
    if gpu:
        props = torch.cuda.get_device_properties(0)
        gpu_facts = (f" ({props.total_memory / 1e9:.0f} GB, {sm_count} SMs, CUDA "
                     f"{torch.version.cuda})")
    table = {
        "what": (f"Forward passes of a {label}-shaped decoder ({shape.layers} layers, hidden "
                 f"{shape.hidden}, intermediate {shape.inter}, {shape.heads} query / {shape.kv} KV heads "
                 f"of {shape.hd}, vocab {shape.vocab}{', QKV bias' if shape.bias else ''}"
                 f"{', tied embeddings' if shape.tied else ''}) with random {dt} weights, timed on "
                 f"{device}{gpu_facts} with PyTorch {torch.__version__} by "
                 "validator/probe/silicon_probe.py"
                 + ("." if gpu else f" ({sm_count} torch threads; `sm_count` holds that count).")),
        "method": [
            f"decode: B sequences, each with `context` tokens already in a dense (not paged) {dt} KV "
            "cache; one step = embedding gather, per layer RMSNorm, fused QKV projection"
            f"{' (+bias)' if shape.bias else ''}, K/V written at the new position, SDPA attention over "
            f"context+1 keys (the {shape.heads // shape.kv} query heads of each KV head ride in the "
            "query axis), O projection, RMSNorm, fused gate/up projection, SiLU*up, down projection; "
            "final RMSNorm, LM head for every sequence, argmax. " + timing,
            f"prefill: one fresh prompt of `tokens` tokens, causal SDPA with native GQA, LM head on "
            f"the last token only; {graph}, median of {prefill_reps}"
            f"{'' if gpu else ' (perf_counter)'}; `eager` op by op, median of {eager_prefill}.",
            f"mixed: one chunked-prefill iteration: a fresh prompt chunk of `chunk` tokens and B "
            "decodes at `context` share the dense GEMMs (concatenated rows), attention run separately "
            "for each part, LM head for the chunk's last token and the B decodes; "
            f"{graph}, median of {prefill_reps}.",
            "Not included: RoPE (elementwise, under 1 % of a step), paged-attention indexing, vLLM's "
            "scheduler, sampler (top-p/penalties), detokenizer and API server; real vLLM adds host "
            "time on top of these times (partly hidden by async scheduling).",
            "sanity: copy_1GiB = device-to-device copy (read+write bytes / time); gemm_8192 = 8192^3 "
            f"{dt} matmul; gemv_stream_2GiB = 16 x [1,8192]x[8192,8192] {dt} matvecs (weight bytes / "
            "time)." + san_note,
        ],
        "units": "seconds",
        "device": device,
        "torch": torch.__version__,
        "sm_count": sm_count,
        "model": {
            "hidden": shape.hidden, "inter": shape.inter, "layers": shape.layers,
            "heads": shape.heads, "kv": shape.kv, "hd": shape.hd, "vocab": shape.vocab,
            "bias": shape.bias, "params": model.params(),
            "kv_bytes_per_token": model.kv_bytes_per_token(), "init_s": init_s,
        },
        "sanity": san,
        "decode": decode_rows,
        "prefill": prefill_rows,
        "mixed": mixed_rows,
    }
    out = Path(a.out)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1) + "\n")
    log(f"{len(decode_rows)} decode, {len(prefill_rows)} prefill, {len(mixed_rows)} mixed rows "
        f"written to {out} in {time.perf_counter() - t_all:.1f} s")
    if not (decode_rows or prefill_rows or mixed_rows):
        log("no row was measured")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
