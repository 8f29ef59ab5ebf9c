#!/usr/bin/env python3
"""The official `openai` Python package, unmodified and with the same code, against real vLLM and the fake server.

usage: openai_same_code.py BASE_URL [BASE_URL...]   (each like http://127.0.0.1:8000/v1)

Checks only what any vLLM-compatible server guarantees: a chat stream opens with the assistant role, then content
events (one event may carry several tokens, or none while a multi-byte character is incomplete), exactly one
finish_reason, then the usage event when include_usage is set; tokens are counted from usage, not from events.
Requests run to max_tokens (ignore_eos), so the counts are exact. Exit 1 on the first failure.
"""
import sys

from openai import NotFoundError, OpenAI

PROMPT = "Explain what a GPU scheduler does, in two sentences."


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(base):
    client = OpenAI(base_url=base, api_key="EMPTY", timeout=120, max_retries=0)
    check([m.id for m in client.models.list().data] == ["local"], "models list is ['local']")

    chat = client.chat.completions.create(model="local", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=6, extra_body={"ignore_eos": True})
    check(chat.choices[0].message.role == "assistant", "assistant role")
    check(chat.choices[0].finish_reason == "length", f"finish {chat.choices[0].finish_reason}")
    check(chat.usage.completion_tokens == 6, f"usage {chat.usage}")
    check(chat.usage.total_tokens == chat.usage.prompt_tokens + 6, "total = prompt + completion")

    chunks = list(client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": PROMPT}], max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    check(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant", "role first")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finishes == ["length"], f"one finish: {finishes}")
    body = [c for c in chunks[1:] if c.choices]
    check(body and body[-1].choices[0].finish_reason == "length", "finish on the last choice event")
    check(all(c.choices[0].delta.role in (None, "") for c in body), "role only in the first event")
    check(1 <= len(body) <= 8, f"1..8 content events for 8 tokens: {len(body)}")
    check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8, "usage event last, 8 tokens")
    text = "".join(c.choices[0].delta.content or "" for c in body)
    check(isinstance(text, str), "text")

    cmpl = client.completions.create(model="local", prompt="hello", max_tokens=4, extra_body={"ignore_eos": True})
    check(cmpl.choices[0].finish_reason == "length" and cmpl.usage.completion_tokens == 4, f"completion {cmpl.usage}")
    chunks = list(client.completions.create(model="local", prompt="hello", max_tokens=5, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    body = [c for c in chunks if c.choices]
    check(body and body[-1].choices[0].finish_reason == "length", "completion stream finish")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5, "completion usage event")
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=2)
        check(False, "unknown model must fail")
    except NotFoundError:
        pass


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for base in sys.argv[1:]:
        try:
            run(base)
            print(f"openai same code: {base} OK")
        except AssertionError as e:
            failed += 1
            print(f"openai same code: {base} FAIL: {e}")
    print(f"{len(sys.argv) - 1 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
