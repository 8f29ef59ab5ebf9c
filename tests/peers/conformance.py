#!/usr/bin/env python3
"""Conformance of an OpenAI-compatible server against real vLLM: the same corpus of requests (tests/peers/corpus.json)
is sent to both, and each answer is reduced to its structure (status, content type, JSON keys and types, stream event
sequence, /metrics families with their types and labels). Values that must differ (ids, timestamps, text, prompt
token counts of two different tokenizers, messages) are masked; everything else must match, or be listed in the
allow-list with a reason. Standard library only.

usage: conformance.py REF_BASE TEST_BASE [--corpus FILE] [--allow FILE] [--report OUT.md] [--dump DIR]
  REF_BASE  the reference (real vLLM), e.g. http://127.0.0.1:8100
  TEST_BASE the server under test (servesim serve), e.g. http://127.0.0.1:8200
Exit status: 0 when every difference is allow-listed, 1 when there is a new one, 2 on a usage or transport error.
"""
import argparse
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

# Flattened paths (indices written [*]) whose values are masked: only their JSON type is compared.
MASKED = {
    "id", "created", "system_fingerprint",
    "choices[*].message.content", "choices[*].delta.content", "choices[*].text",
    "usage.prompt_tokens", "usage.total_tokens",  # two different tokenizers; total is checked as prompt+completion
    "error.message",
    "data[*].created", "data[*].permission[*].id", "data[*].permission[*].created",
    "data[*].root",  # the model's path on the real server, the HF repo id on servesim
    "count", "tokens", "tokens[*]", "prompt",  # /tokenize, /detokenize: different tokenizers
}
# Arrays whose length is masked too (their elements are not listed one by one).
MASKED_ARRAYS = ["tokens"]


def glob_match(text, pattern):
    """`*` matches any run of characters; nothing else is special (ids contain brackets)."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), text, re.S) is not None


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def flatten(v, path="", out=None):
    """{path: (type, value-or-None)} for every leaf, objects and arrays included as their own entries."""
    if out is None:
        out = {}
    gpath = re.sub(r"\[\d+\]", "[*]", path)
    masked = gpath in MASKED
    t = jtype(v)
    if isinstance(v, dict):
        out[path or "$"] = ("object", None)
        for k, x in v.items():
            flatten(x, f"{path}.{k}" if path else k, out)
    elif isinstance(v, list):
        if gpath in MASKED_ARRAYS:
            out[path] = ("array", None)
        else:
            out[path or "$"] = ("array", len(v))
            for i, x in enumerate(v):
                flatten(x, f"{path}[{i}]", out)
    else:
        if t == "number" and not masked:  # floats: compared as type only (timings, fractions)
            masked = True
        out[path or "$"] = (t, None if masked else v)
    return out


def parse_sse(text):
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        data = [ln[5:].lstrip() for ln in block.splitlines() if ln.startswith("data:")]
        if not data:
            continue
        payload = "\n".join(data)
        if payload == "[DONE]":
            events.append(("done", None))
            continue
        try:
            events.append(("json", json.loads(payload)))
        except ValueError:
            events.append(("unparsable", payload))
    return events


def classify(ev):
    kind, obj = ev
    if kind != "json":
        return kind
    if "error" in obj:
        return "error"
    choices = obj.get("choices")
    if choices == [] and obj.get("usage") is not None:
        return "usage"
    if not choices:
        return "other"
    c = choices[0]
    if c.get("finish_reason") is not None:
        return "finish"
    delta = c.get("delta")
    if isinstance(delta, dict) and "role" in delta:
        return "role"
    return "content"


def stream_shape(text):
    """Collapsed event sequence: consecutive events of the same class and key structure count once."""
    seq = []
    for ev in parse_sse(text):
        cls = classify(ev)
        flat = flatten(ev[1]) if ev[0] == "json" else {}
        # Array lengths of choices differ between one-token and multi-token events only in content; keys decide.
        sig = tuple(sorted((p, t) for p, (t, _) in flat.items()))
        if seq and seq[-1]["class"] == cls and seq[-1]["sig"] == sig:
            seq[-1]["count"] += 1
            continue
        seq.append({"class": cls, "sig": sig, "flat": flat, "count": 1})
    return seq


def parse_metrics(text):
    """{normalised name: (type, sorted label names)} for the vllm: families. Counters are keyed by their _total
    sample, histograms by the family name; the _created series (Python client artefacts) are left out."""
    types = {}
    samples = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(None, 3)
            types[name] = typ.strip()
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if not m:
                continue
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    out = {}

    def family_of(sample):
        best = None
        for fam in types:
            if sample == fam or (sample.startswith(fam + "_") and sample[len(fam) + 1:] in
                                 ("total", "bucket", "sum", "count", "created", "info", "gcount", "gsum")):
                if best is None or len(fam) > len(best):
                    best = fam
        return best

    for sample, labels in samples.items():
        if not sample.startswith("vllm:") or sample.endswith("_created"):
            continue
        fam = family_of(sample)
        typ = types.get(fam, "untyped")
        if typ == "counter":
            key = sample if sample.endswith("_total") else sample + "_total"
        elif typ in ("histogram", "summary"):
            key = fam
        else:
            key = sample
        labels = labels - {"le", "quantile"}
        prev = out.get(key, (typ, set()))
        out[key] = (typ, prev[1] | labels)
    # Families declared with no sample yet (e.g. vLLM's labelled counters before a first event).
    for fam, typ in types.items():
        if fam.startswith("vllm:") and not fam.endswith("_created"):
            key = fam + "_total" if typ == "counter" and not fam.endswith("_total") else fam
            out.setdefault(key, (typ, set()))
    return {k: (t, sorted(ls)) for k, (t, ls) in out.items()}


def request(base, case, timeout):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    headers = dict(case.get("headers", {}))
    body = None
    if "raw" in case:
        body = case["raw"].encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in case:
        body = json.dumps(case["body"]).encode()
        headers.setdefault("Content-Type", "application/json")
    t0 = time.monotonic()
    conn.request(case.get("method", "POST" if body is not None else "GET"), case["path"], body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read().decode("utf-8", "replace")
    conn.close()
    return {"status": resp.status, "content_type": resp.getheader("Content-Type", ""),
            "retry_after": resp.getheader("Retry-After"), "body": data, "seconds": round(time.monotonic() - t0, 3)}


def shape(case, r):
    ct = r["content_type"].split(";")[0].strip().lower()
    if case.get("kind") == "metrics":
        return {"kind": "metrics", "metrics": parse_metrics(r["body"])}
    if ct == "text/event-stream":
        return {"kind": "sse", "seq": stream_shape(r["body"])}
    try:
        obj = json.loads(r["body"])
    except ValueError:
        return {"kind": "text", "empty": r["body"].strip() == ""}
    return {"kind": "json", "flat": flatten(obj), "obj": obj}


def invariants(case, sh):
    """Per-side checks that hold for any correct server (reported as differences of that side)."""
    issues = []
    objs = []
    if sh["kind"] == "json":
        objs = [sh["obj"]]
    for o in objs:
        if isinstance(o, dict) and isinstance(o.get("tokens"), list) and isinstance(o.get("count"), int):
            if o["count"] != len(o["tokens"]):
                issues.append(f"/tokenize count {o['count']} != len(tokens) {len(o['tokens'])}")
    usage_objs = [o for o in objs if isinstance(o, dict) and isinstance(o.get("usage"), dict)]
    for o in usage_objs:
        u = o["usage"]
        if all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")):
            if u["prompt_tokens"] + u["completion_tokens"] != u["total_tokens"]:
                issues.append("usage.total_tokens != prompt_tokens + completion_tokens")
    return issues


def _under(p, roots):
    return any(p.startswith(r + ".") or p.startswith(r + "[") for r in roots)


def compare_flat(prefix, fa, fb, diffs):
    gone = []  # a missing or extra object is reported once, not once per key inside it
    for p in fa:
        if _under(p, gone):
            continue
        if p not in fb:
            gone.append(p)
            diffs.append((f"{prefix}:missing:{p}", f"key `{p}` ({fa[p][0]}) absent"))
        elif fa[p][0] != fb[p][0]:
            diffs.append((f"{prefix}:type:{p}", f"`{p}` is {fb[p][0]}, vLLM has {fa[p][0]}"))
        elif fa[p][1] != fb[p][1]:
            diffs.append((f"{prefix}:value:{p}", f"`{p}` = {json.dumps(fb[p][1])}, vLLM has {json.dumps(fa[p][1])}"))
    for p in fb:
        if p not in fa and not _under(p, gone):
            gone.append(p)
            diffs.append((f"{prefix}:extra:{p}", f"key `{p}` ({fb[p][0]}) not in vLLM's answer"))


def compare(case, ra, rb):
    name = case["name"]
    diffs = []
    if ra["status"] != rb["status"]:
        # Different outcomes: the bodies differ by necessity; one difference, with both messages for the report.
        def gist(r):
            try:
                return json.loads(r["body"])["error"]["message"][:160]
            except (ValueError, KeyError, TypeError):
                return r["content_type"] or "no content type"
        diffs.append((f"{name}:status", f"status {rb['status']} ({gist(rb)}); vLLM {ra['status']} ({gist(ra)})"))
        return diffs
    cta, ctb = ra["content_type"].lower().replace(" ", ""), rb["content_type"].lower().replace(" ", "")
    if cta != ctb:
        diffs.append((f"{name}:content-type", f"content type `{rb['content_type']}`, vLLM `{ra['content_type']}`"))
    sa, sb = shape(case, ra), shape(case, rb)
    if sa["kind"] != sb["kind"]:
        diffs.append((f"{name}:body-kind", f"body is {sb['kind']}, vLLM's is {sa['kind']}"))
    elif sa["kind"] == "json":
        compare_flat(name, sa["flat"], sb["flat"], diffs)
    elif sa["kind"] == "text":
        if sa["empty"] != sb["empty"]:
            diffs.append((f"{name}:body-empty", f"body empty={sb['empty']}, vLLM empty={sa['empty']}"))
    elif sa["kind"] == "sse":
        ca = [f"{e['class']}" for e in sa["seq"]]
        cb = [f"{e['class']}" for e in sb["seq"]]
        if ca != cb:
            diffs.append((f"{name}:stream:sequence", f"events {' '.join(cb)}; vLLM {' '.join(ca)}"))
        else:
            for i, (ea, eb) in enumerate(zip(sa["seq"], sb["seq"])):
                compare_flat(f"{name}:event[{ea['class']}]", ea["flat"], eb["flat"], diffs)
        # Usage in a stream: completion tokens counted from the usage event.
        ua = [e["flat"].get("usage.completion_tokens") for e in sa["seq"] if e["class"] == "usage"]
        ub = [e["flat"].get("usage.completion_tokens") for e in sb["seq"] if e["class"] == "usage"]
        if ua != ub and ca == cb:
            diffs.append((f"{name}:stream:usage", f"usage completion tokens {ub}, vLLM {ua}"))
    elif sa["kind"] == "metrics":
        ma, mb = sa["metrics"], sb["metrics"]
        for k in sorted(set(ma) | set(mb)):
            if k not in mb:
                diffs.append((f"metrics:missing:{k}", f"`{k}` ({ma[k][0]}, labels {ma[k][1]}) absent"))
            elif k not in ma:
                diffs.append((f"metrics:extra:{k}", f"`{k}` ({mb[k][0]}) not exposed by vLLM"))
            else:
                if ma[k][0] != mb[k][0]:
                    diffs.append((f"metrics:type:{k}", f"`{k}` is {mb[k][0]}, vLLM {ma[k][0]}"))
                if ma[k][1] != mb[k][1]:
                    diffs.append((f"metrics:labels:{k}", f"`{k}` labels {mb[k][1]}, vLLM {ma[k][1]}"))
    for side, sh in (("vLLM", sa), ("test", sb)):
        for issue in invariants(case, sh):
            diffs.append((f"{name}:invariant:{side}", f"{side}: {issue}"))
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref")
    ap.add_argument("test")
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus.json"))
    ap.add_argument("--allow", default=os.path.join(HERE, "allowlist.json"))
    ap.add_argument("--report", default=None, help="Markdown report of every difference")
    ap.add_argument("--dump", default=None, help="folder for both raw answers of every request (JSON)")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()

    corpus = json.load(open(args.corpus))["cases"]
    allow = json.load(open(args.allow))["allow"] if args.allow and os.path.exists(args.allow) else []
    for a in allow:
        if not a.get("reason"):
            print(f"allow-list entry {a.get('id')!r} has no reason", file=sys.stderr)
            return 2
    rows = []
    all_diffs = []
    raw = []
    for case in corpus:
        try:
            ra = request(args.ref, case, args.timeout)
            rb = request(args.test, case, args.timeout)
        except OSError as e:
            print(f"transport error on {case['name']}: {e}", file=sys.stderr)
            return 2
        diffs = compare(case, ra, rb)
        raw.append({"case": case, "vllm": ra, "test": rb})
        for did, text in diffs:
            entry = next((a for a in allow if glob_match(did, a["id"])), None)
            all_diffs.append({"case": case["name"], "id": did, "text": text,
                              "allowed": entry["id"] if entry else None,
                              "reason": entry["reason"] if entry else None})
        rows.append((case["name"], ra["status"], rb["status"], len(diffs),
                     sum(1 for d in all_diffs if d["case"] == case["name"] and d["allowed"] is None)))
    used = {d["allowed"] for d in all_diffs if d["allowed"]}
    stale = [a["id"] for a in allow if a["id"] not in used]
    new = [d for d in all_diffs if d["allowed"] is None]

    lines = ["# Conformance: servesim serve vs real vLLM", "",
             f"Reference (vLLM): `{args.ref}`; under test: `{args.test}`; corpus `{os.path.relpath(args.corpus)}` "
             f"({len(corpus)} requests); allow-list `{os.path.relpath(args.allow)}` ({len(allow)} entries).", "",
             f"**{len(all_diffs)} differences: {len(all_diffs) - len(new)} allow-listed, {len(new)} new.**", "",
             "| request | vLLM status | test status | differences | new |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {a} | {b} | {d} | {x} |" for n, a, b, d, x in rows]
    lines += ["", "## New differences (not in the allow-list)", ""]
    lines += [f"- `{d['id']}`: {d['text']}" for d in new] or ["none"]
    lines += ["", "## Allow-listed differences", ""]
    lines += [f"- `{d['id']}`: {d['text']} — allowed by `{d['allowed']}`: {d['reason']}"
              for d in all_diffs if d["allowed"]] or ["none"]
    if stale:
        lines += ["", "## Allow-list entries that matched nothing (stale?)", ""] + [f"- `{s}`" for s in stale]
    report = "\n".join(lines) + "\n"
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        open(args.report, "w").write(report)
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        json.dump(raw, open(os.path.join(args.dump, "answers.json"), "w"), indent=1)
    for d in new:
        print(f"NEW DIFFERENCE {d['id']}: {d['text']}")
    print(f"conformance: {len(corpus)} requests, {len(all_diffs)} differences, "
          f"{len(all_diffs) - len(new)} allow-listed, {len(new)} new; stale allow-list entries: {len(stale)}")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
