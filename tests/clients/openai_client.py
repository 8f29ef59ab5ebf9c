#!/usr/bin/env python3
"""The official `openai` Python package against `servesim serve`, unmodified.

Usage: openai_client.py BASE_URL [API_KEY]   (BASE_URL like http://127.0.0.1:8000/v1)

Runs the models list, chat and completions, streaming (with include_usage) and not, and checks the
shapes the package parses. Exits non-zero on the first failure.
"""

import sys

from openai import OpenAI, NotFoundError

PROMPT = "Explain what a GPU scheduler does, in two sentences."


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else "EMPTY"
    client = OpenAI(base_url=base, api_key=key, timeout=60, max_retries=0)

    models = client.models.list()
    names = [m.id for m in models.data]
    check(names == ["local"], f"models list: {names}")

    chat = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=6,
        extra_body={"ignore_eos": True},
    )
    check(chat.object == "chat.completion", f"chat object: {chat.object}")
    check(len(chat.choices) == 1, "one chat choice")
    check(chat.choices[0].message.role == "assistant", "assistant role")
    check(bool(chat.choices[0].message.content), "chat content")
    check(chat.choices[0].finish_reason == "length", f"chat finish: {chat.choices[0].finish_reason}")
    check(chat.usage.completion_tokens == 6, f"chat usage: {chat.usage}")
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + 6, "chat total tokens")

    stream = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    tokens = [c for c in chunks if c.choices and c.choices[0].delta.content]
    check(len(tokens) == 5, f"one chunk per token: {len(tokens)}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == ["length"], f"chat stream finish: {finishes}")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5, "usage chunk last")

    cmpl = client.completions.create(model="local", prompt="hello", max_tokens=4, extra_body={"ignore_eos": True})
    check(cmpl.object == "text_completion", f"completion object: {cmpl.object}")
    check(cmpl.choices[0].finish_reason == "length", "completion finish")
    check(cmpl.usage.completion_tokens == 4, f"completion usage: {cmpl.usage}")

    stream = client.completions.create(
        model="local",
        prompt="hello",
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    texts = [c for c in chunks if c.choices]
    check(len(texts) == 3, f"completion stream events: {len(texts)}")
    check(texts[-1].choices[0].finish_reason == "length", "completion stream finish")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3, "completion usage chunk")

    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        check(False, "unknown model must fail")
    except NotFoundError as e:
        check("does not exist" in str(e), f"404 message: {e}")

    print("openai client: models, chat and completions (stream and non-stream) OK")


if __name__ == "__main__":
    main()
