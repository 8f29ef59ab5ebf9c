#!/usr/bin/env python3
"""Tests of the silicon probe on the CPU (seconds): the passes compute what they claim, and a run writes
a table in the reference format. Needs PyTorch:

    ~/.cache/servesim-peer/venv/bin/python validator/probe/test_silicon_probe.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import check_table  # noqa: E402
import silicon_probe as sp  # noqa: E402

SHAPE = sp.Shape(hidden=64, inter=96, layers=2, heads=4, kv=2, hd=16, vocab=200, bias=True)


def logits_model(shape=SHAPE) -> sp.Decoder:
    """A decoder whose head returns the logits (not their argmax), to compare passes exactly."""
    m = sp.Decoder(torch, shape, "cpu", torch.float64, seed=1)
    m._head = lambda x: m.F.linear(m.rms(x, m.norm), m.lm_head)
    return m


class Passes(unittest.TestCase):
    def test_decode_after_prefill_equals_a_longer_prefill(self):
        # No RoPE, so attention depends on positions only through the causal mask: decoding token T
        # after a prefill of T tokens must give the logits of a prefill of T + 1 tokens.
        m = logits_model()
        tok = torch.randint(0, SHAPE.vocab, (9,))
        cache = m.cache(1, 9)
        m.prefill(tok[:8], cache)
        step = m.decode(tok[8:9], cache, 8)
        whole = m.prefill(tok, m.cache(1, 9))
        torch.testing.assert_close(step, whole)

    def test_a_batch_decodes_each_sequence_on_its_own_cache(self):
        m = logits_model()
        B, ctx = 3, 5
        cache = m.cache(B, ctx + 1)
        for kc, vc in cache:
            kc.normal_()
            vc.normal_()
        tok = torch.randint(0, SHAPE.vocab, (B,))
        together = m.decode(tok, cache, ctx)
        for b in range(B):
            alone = m.decode(tok[b:b + 1], [(k[b:b + 1].clone(), v[b:b + 1].clone()) for k, v in cache], ctx)
            torch.testing.assert_close(together[b:b + 1], alone)

    def test_mixed_is_a_chunk_prefill_and_decodes_sharing_gemms(self):
        m = logits_model()
        C, B, ctx = 6, 2, 4
        tok = torch.randint(0, SHAPE.vocab, (C + B,))
        dcache = m.cache(B, ctx + 1)
        for kc, vc in dcache:
            kc.normal_()
            vc.normal_()
        dcopy = [(k.clone(), v.clone()) for k, v in dcache]
        out = m.mixed(tok, C, m.cache(1, C), dcache, ctx)
        self.assertEqual(out.shape[0], 1 + B)
        torch.testing.assert_close(out[:1], m.prefill(tok[:C], m.cache(1, C)))
        torch.testing.assert_close(out[1:], m.decode(tok[C:], dcopy, ctx))

    def test_params_and_kv_bytes_follow_the_shape(self):
        s = sp.Shape(hidden=3584, inter=18944, layers=28, heads=28, kv=4, hd=128, vocab=152064, bias=True)
        qkv = (s.heads + 2 * s.kv) * s.hd
        layer = qkv * s.hidden + qkv + s.hidden * s.heads * s.hd + 3 * s.hidden * s.inter + 2 * s.hidden
        # The catalogue's Qwen2.5-7B count: layers, embedding, LM head and the final norm.
        self.assertEqual(s.layers * layer + 2 * s.vocab * s.hidden + s.hidden, 7_615_616_512)
        m = logits_model()
        qkv = (SHAPE.heads + 2 * SHAPE.kv) * SHAPE.hd
        layer = (qkv * SHAPE.hidden + qkv + SHAPE.hidden * SHAPE.heads * SHAPE.hd
                 + 3 * SHAPE.hidden * SHAPE.inter + 2 * SHAPE.hidden)
        self.assertEqual(m.params(), SHAPE.layers * layer + 2 * SHAPE.vocab * SHAPE.hidden + SHAPE.hidden)
        self.assertEqual(m.kv_bytes_per_token(), 2 * SHAPE.layers * SHAPE.kv * SHAPE.hd * 8)


class Shapes(unittest.TestCase):
    def test_catalogue_models_load_and_moe_is_refused(self):
        s, name = sp.shape_from_catalogue("qwen2.5-7b-instruct")
        self.assertEqual((s.hidden, s.inter, s.layers, s.heads, s.kv, s.hd, s.vocab, s.bias, s.tied),
                         (3584, 18944, 28, 28, 4, 128, 152064, True, False))
        self.assertEqual(name, "qwen2.5-7b-instruct")
        s, _ = sp.shape_from_catalogue("llama-3.1-8b")
        self.assertFalse(s.bias)
        self.assertTrue(sp.shape_from_catalogue("qwen2.5-0.5b")[0].tied)
        with tempfile.TemporaryDirectory() as d:
            cfg = Path(d) / "config.json"
            cfg.write_text(json.dumps({"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 96,
                                       "num_hidden_layers": 1, "num_attention_heads": 4,
                                       "num_key_value_heads": 2, "vocab_size": 10,
                                       "num_local_experts": 8}))
            with self.assertRaises(sp.Unsupported):
                sp.shape_from_hf_config(str(cfg))
            self.assertEqual(sp.main(["--config", str(cfg), "--out", str(Path(d) / "x.json")]), 2)


class Run(unittest.TestCase):
    def test_a_tiny_cpu_run_writes_the_reference_format(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "tiny.json"
            rc = sp.main(["--tiny", "--device", "cpu", "--batches", "1,2", "--contexts", "8",
                          "--prefill-tokens", "8", "--mixed", "4x2x8", "--reps", "2",
                          "--prefill-reps", "2", "--eager-reps", "1", "--warmup", "1", "--out", str(out)])
            self.assertEqual(rc, 0)
            table = json.loads(out.read_text())
            ref = json.loads(check_table.REFERENCE.read_text())
            self.assertEqual(check_table.check(table, ref), [])
            self.assertEqual([(r["batch"], r["context"]) for r in table["decode"]], [(1, 8), (2, 8)])
            self.assertEqual([(r["chunk"], r["batch"], r["context"]) for r in table["mixed"]], [(4, 2, 8)])
            self.assertEqual(table["model"]["kv_bytes_per_token"], 2 * 2 * 2 * 64 * 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
