"""Builds the real-vLLM peer's model: a tiny Qwen2-architecture LM with random weights and a byte-level BPE
tokenizer trained here (ChatML chat template, Qwen2's special tokens). Nothing is downloaded.

The weights are random but one thing is arranged on purpose: the model can never sample its end-of-sequence
tokens, so every request runs exactly to max_tokens (finish_reason "length"), which makes a conformance run
deterministic. (Residual dimension 0 carries a constant that no layer writes to; the LM-head rows of the special
tokens weigh it strongly negative.)

usage: build_model.py OUT_DIR
"""
import json
import os
import random
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set content = message['content'] %}"
    "{% else %}{% set content = message['content'] | map(attribute='text') | join('') %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
WORDS = (
    "the a an of to and in is it that for on with as was by at from this be are or not have has but which one "
    "all their there were when will more can about if out up so what time into year some them could than other "
    "model server token request batch cache memory queue stream latency throughput prompt answer engine schedule "
    "count upward explain what gpu scheduler does in two sentences hello world number first second third quick "
    "brown fox jumps over lazy dog seven eight nine ten eleven twelve thirteen fourteen fifteen twenty hundred "
    "please write story about cat sun rain river mountain city light dark red green blue small large fast slow "
    # the validator's drill prompts (shared/reference/drills.md), so that sized(n) prompts stay near n tokens
    "summarize note in one short sentence gpu scheduler memory bandwidth kernel batching latency throughput tensor "
    "core occupancy prefill decode kv cache token replica goodput percentile count upward from writing per line "
    "keep going do not stop"
).split()


def corpus(n_lines=4000, seed=0):
    rng = random.Random(seed)
    for _ in range(n_lines):
        k = rng.randint(4, 24)
        line = " ".join(rng.choice(WORDS) for _ in range(k))
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "?", "!", ",", ":"]) + " " + str(rng.randint(0, 9999))
        yield line


def build_tokenizer(out_dir, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"], model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    tok = build_tokenizer(out_dir, vocab_size=2048)
    vocab = len(tok)
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIALS}
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        max_window_layers=2, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        dtype="float32")
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0          # a constant in residual dim 0 ...
        for layer in model.model.layers:                       # ... that no layer writes to
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0                       # dim 0 adds nothing to ordinary tokens
        for tid in ids.values():                               # and a large negative logit to the specials
            model.lm_head.weight[tid, 0] = -20.0
    model.save_pretrained(out_dir, safe_serialization=True)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": ids["<|endoftext|>"],
                   "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]]}, f, indent=2)
    # Check: the end-of-sequence tokens are never the likely ones.
    with torch.no_grad():
        x = torch.randint(3, vocab, (4, 32))
        logits = model(x).logits
        p = torch.softmax(logits, -1)[..., list(ids.values())].max().item()
    assert p < 1e-6, f"special tokens still reachable (p={p})"
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Qwen2 {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {vocab}, "
          f"{n_params/1e6:.2f} M params, specials {ids}, max p(special) {p:.2e} -> {out_dir}")


if __name__ == "__main__":
    main()
