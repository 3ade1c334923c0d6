#!/usr/bin/env python3
"""Deterministic benchmark inputs for `make bench` (read by llma-bench, the
native tract bench and models/ort_bench.py alike, so every runtime sees the
same texts).

    python models/gen_stream.py --tokenizer BUNDLE/tokenizer.json --out DIR
        [--seed N] [--traces N] [--sample-messages N] [--lengths 16,64,128,512] [--batch 8]

Writes into DIR:

* grid.json: for each length L, `batch` different texts that tokenize to
  exactly L tokens with the bundle's tokenizer (special tokens included).
* stream.jsonl: a realistic `$ai_generation` stream. Traces of 1-30 user
  turns; every generation re-sends the whole conversation so far (system
  prompt, every earlier user and assistant message, tool calls and tool
  results), as `$ai_input` does. A third of the turns call tools: the model is
  called again after each tool result, with the same user messages. User
  message lengths (tokens of this tokenizer): mostly short (median ~14, ~85%
  under 40), some medium (40-128), a few long pastes (logs, code, documents;
  128 to ~700 tokens, cut to 512 by the tokenizer and to the last 2000
  characters by extraction). Some short replies ("thanks!", "continue") recur
  across traces, as they do in real traffic. Formats are mixed: OpenAI style
  (`role: tool`) and Anthropic style (`tool_result` blocks in a user turn),
  content as a string or as text blocks, and 10% of `$ai_input` stored as a
  JSON string.
* sample.jsonl: the timed subset of the stream: every K-th generation, K chosen
  so the subset holds about --sample-messages user messages. Every runtime
  classifies exactly this subset; cache statistics use the whole stream.
* meta.json: parameters and counts.

The output depends only on the arguments and the tokenizer file.
"""

import argparse
import json
import math
import os
import random
import sys
import uuid

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer  # noqa: E402

SYSTEM_PROMPTS = [
    "You are Hoglet, the support assistant for an analytics product. Be concise and friendly.",
    "You are a senior software engineer helping a colleague debug their code. Answer with code when useful.",
    "You are a helpful writing assistant. Keep the user's tone and fix grammar.",
    "You are a travel planner. Ask clarifying questions before booking anything.",
    "You are a data analyst. Explain numbers plainly and show the SQL you ran.",
]

# Short replies that recur across traces (real traffic repeats them verbatim).
CANNED = [
    "thanks!", "thank you", "ok", "yes", "no", "continue", "go on", "perfect, thanks!", "that's wrong",
    "try again", "why?", "can you explain?", "this doesn't work", "great, that worked", "hmm, not quite",
    "ok thanks", "nice", "still broken", "what?", "please fix it", "looks good", "no, the other one",
    "shorter please", "that's not what I asked", "awesome!!", "ugh, same error", "yes please", "stop",
]

SUBJECTS = ["I", "we", "they", "our users", "my colleagues", "the testers", "my friends", "the managers",
            "the new interns", "our QA engineers", "the clients", "you"]
FEELINGS = ["love", "hate", "really like", "can't stand", "feel confused by", "feel happy with", "feel annoyed by",
            "appreciate", "don't trust", "feel impressed by", "feel frustrated with", "worry about"]
OBJECTS = ["the report", "this answer", "your code", "the meeting notes", "the new feature", "the documentation",
           "my essay", "the summary", "the translation", "this function", "the results", "the deadline",
           "the prompt", "that idea", "the bug", "the dashboard", "the funnel view", "the export", "the query",
           "the retention chart", "the billing page", "the onboarding flow", "the API response", "the test suite"]
REQUESTS = ["Can you rewrite", "Please summarize", "Could you check", "Explain", "Fix", "Translate", "Shorten",
            "Review", "Give me three alternatives to", "Why is", "How do I improve", "Add comments to",
            "Write tests for", "Make a table from", "Compare"]
ADVERBS = ["really", "very", "not", "never", "kind of", "absolutely", "barely", "so", "quite", "totally",
           "somewhat", "extremely", "slightly", "honestly", "actually"]
PROBLEMS = ["it keeps timing out", "the numbers don't add up", "it crashes on startup", "the tone is off",
            "it ignores my instructions", "the output is truncated", "it is way too long", "the dates are wrong",
            "the chart is empty", "it returns a 500 error", "nothing happens when I click", "it uses the old API"]
PRAISE = ["this is exactly what I needed", "you saved my week", "that was really helpful", "brilliant, thanks",
          "much better now", "works like a charm", "the team loved it", "finally it makes sense"]
TAILS = ["", ".", "!", "?", "!!", " :)", " :(", ", thanks", ", please", " asap", "..."]
LOG_LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]
LOG_EVENTS = ["connection reset by peer", "request finished in {n} ms", "retrying batch {n} of 12",
              "cache miss for key user:{n}", "worker-{n} heartbeat late", "query returned {n} rows",
              "timeout after {n}s waiting for lock", "deserialization failed at byte {n}"]
PASTE_INTROS = ["Here is the error log:", "This is my code, what's wrong with it?", "Can you summarize this document?",
                "Please proofread the following:", "Here's the full stack trace:", "Translate this into German:"]
ASSISTANT = ["Sure, here is a revised version.", "The issue is the missing await on line 12.",
             "I've summarized the key points below.", "Let me check that for you.",
             "You're right, I made a mistake; here is the corrected query.", "Here are three options."]
TOOLS = ["search_docs", "run_sql", "get_weather", "read_file", "create_ticket", "fetch_url"]


class Texts:
    """Texts calibrated in tokens of one tokenizer."""

    def __init__(self, tokenizer_path):
        self.tok = Tokenizer.from_file(tokenizer_path)
        self.tok.no_truncation()
        self.tok.no_padding()
        self.specials = len(self.tok.encode("hello there", add_special_tokens=True).ids) - len(
            self.tok.encode("hello there", add_special_tokens=False).ids)

    def count(self, text):
        """Tokens the model sees (special tokens included, no truncation)."""
        return len(self.tok.encode(text, add_special_tokens=True).ids)

    def cut(self, text, tokens, at_word):
        """`text` cut after its first `tokens` tokens (special tokens
        included); with `at_word`, back to the last space before the cut when
        that keeps at least 2/3 of it."""
        content = max(1, tokens - self.specials)
        enc = self.tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= content:
            return text
        end = enc.offsets[content - 1][1]
        if at_word:
            space = text.rfind(" ", 0, end + 1)
            if space >= end * 2 // 3:
                end = space
        return text[:end].rstrip()

    def fit(self, rng, tokens, make, at_word=True):
        """A text of about `tokens` tokens built from `make(rng)` pieces."""
        text = ""
        while True:
            text = (text + " " + make(rng)).strip() if text else make(rng)
            if self.count(text) >= tokens:
                return self.cut(text, tokens, at_word)

    def exact(self, rng, tokens, make, tries=50):
        """A text of exactly `tokens` tokens (cut at a token boundary; a few
        tries, since re-encoding a cut can merge differently)."""
        best = None
        for _ in range(tries):
            text = self.fit(rng, tokens, make, at_word=False)
            n = self.count(text)
            if n == tokens:
                return text
            if best is None or abs(n - tokens) < abs(best[1] - tokens):
                best = (text, n)
        return best[0]


def sentence(rng):
    kind = rng.random()
    if kind < 0.3:
        s = f"{rng.choice(SUBJECTS)} {rng.choice(ADVERBS)} {rng.choice(FEELINGS)} {rng.choice(OBJECTS)}"
    elif kind < 0.55:
        s = f"{rng.choice(REQUESTS)} {rng.choice(OBJECTS)}"
    elif kind < 0.75:
        s = f"{rng.choice(OBJECTS)} is {rng.choice(ADVERBS)} broken, {rng.choice(PROBLEMS)}"
    elif kind < 0.9:
        s = rng.choice(PRAISE)
    else:
        s = f"{rng.choice(PROBLEMS)} and {rng.choice(SUBJECTS)} {rng.choice(FEELINGS)} {rng.choice(OBJECTS)}"
    s = s + rng.choice(TAILS)
    return s[0].upper() + s[1:] if rng.random() < 0.6 else s


def log_line(rng):
    ev = rng.choice(LOG_EVENTS).format(n=rng.randint(1, 9999))
    return (f"2025-03-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d} {rng.choice(LOG_LEVELS)} {ev}\n")


def code_line(rng):
    n = rng.randint(0, 99)
    return rng.choice([
        f"def handler_{n}(event, ctx):\n",
        f"    total_{n} = sum(x.value for x in items if x.ok)\n",
        f"    if not rows_{n}:\n        raise ValueError('empty result {n}')\n",
        f"    return {{'status': {rng.choice([200, 404, 500])}, 'count': len(rows_{n})}}\n",
        f"# TODO: {rng.choice(PROBLEMS)}\n",
    ])


def paste(rng, texts, tokens):
    intro = rng.choice(PASTE_INTROS)
    kind = rng.random()
    piece = log_line if kind < 0.4 else code_line if kind < 0.7 else (lambda r: sentence(r) + " ")
    body = texts.fit(rng, max(8, tokens - texts.count(intro)), piece)
    return intro + "\n" + body


def user_text(rng, text_rng, texts):
    """One user message: mostly short, some medium, a few long pastes. The
    kind and length come from `rng` (the stream's structure, the same for
    every tokenizer); the words from `text_rng`."""
    u = rng.random()
    if u < 0.12:
        return rng.choice(CANNED)
    if u < 0.82:
        tokens = int(min(60, max(3, rng.lognormvariate(math.log(14), 0.6))))
        return texts.fit(text_rng, tokens, sentence)
    if u < 0.97:
        tokens = int(math.exp(rng.uniform(math.log(40), math.log(128))))
        return texts.fit(text_rng, tokens, sentence)
    tokens = int(math.exp(rng.uniform(math.log(128), math.log(700))))
    return paste(text_rng, texts, tokens)


def turns_of(rng):
    """1-30 turns, short conversations more common than long ones."""
    return max(1, min(30, int(math.exp(rng.uniform(0, math.log(31))))))


def user_message(rng, text, style):
    if style == "anthropic" and rng.random() < 0.5:
        return {"role": "user", "content": [{"type": "text", "text": text}]}
    return {"role": "user", "content": text}


def tool_round(rng, style, call_id):
    name = rng.choice(TOOLS)
    args = {"query": rng.choice(OBJECTS), "limit": rng.randint(1, 50)}
    result = json.dumps({"ok": rng.random() < 0.85, "rows": rng.randint(0, 500), "note": rng.choice(PROBLEMS)})
    if style == "openai":
        call = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}
        res = {"role": "tool", "tool_call_id": call_id, "content": result}
    else:
        call = {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": name, "input": args}]}
        res = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": result}]}
    return call, res


def generate_stream(seed, texts, n_traces):
    rng = random.Random(seed)
    events = []
    ts = 1741942365  # 2025-03-14T09:12:45Z
    for t in range(n_traces):
        style = "openai" if rng.random() < 0.5 else "anthropic"
        trace_id = f"trace-{t:04d}"
        session = f"sess-{t // 3:04d}"
        distinct = f"user_{rng.randint(1, 40):03d}"
        history = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
        turn_count = turns_of(rng)
        for turn in range(turn_count):
            text_rng = random.Random(f"{seed}:{t}:{turn}")
            history.append(user_message(rng, user_text(rng, text_rng, texts), style))
            rounds = rng.randint(1, 3) if rng.random() < 0.33 else 0
            for r in range(rounds + 1):
                ts += rng.randint(2, 90)
                ai_input = json.loads(json.dumps(history))
                if r < rounds:
                    call, res = tool_round(rng, style, f"call_{t}_{turn}_{r}")
                    output = [call]
                else:
                    call = res = None
                    output = [{"role": "assistant", "content": rng.choice(ASSISTANT) + " " + sentence(rng)}]
                props = {
                    "$ai_trace_id": trace_id,
                    "$ai_session_id": session,
                    "$ai_span_id": f"span-{t:04d}-{turn:02d}-{r}",
                    "$ai_model": rng.choice(["gpt-4o-mini", "gpt-4o", "claude-sonnet-4"]),
                    "$ai_provider": "openai" if style == "openai" else "anthropic",
                    "$ai_input": json.dumps(ai_input) if rng.random() < 0.1 else ai_input,
                    "$ai_output_choices": output,
                }
                events.append({
                    "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "event": "$ai_generation",
                    "team_id": 2,
                    "distinct_id": distinct,
                    "timestamp": f"{ts_iso(ts)}",
                    "properties": props,
                })
                if call is not None:
                    history.extend([call, res])
                else:
                    history.extend(output)
    return events


def ts_iso(ts):
    import datetime
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def user_count(event):
    """User messages that are text (not tool results) in the event's input."""
    ai = event["properties"]["$ai_input"]
    if isinstance(ai, str):
        ai = json.loads(ai)
    n = 0
    for m in ai:
        if m.get("role") != "user":
            continue
        c = m["content"]
        if isinstance(c, list) and c and all(isinstance(b, dict) and b.get("type") == "tool_result" for b in c):
            continue
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json of the bundle")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=20250314)
    ap.add_argument("--traces", type=int, default=60)
    ap.add_argument("--sample-messages", type=int, default=200)
    ap.add_argument("--lengths", default="16,64,128,512")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    texts = Texts(args.tokenizer)
    os.makedirs(args.out, exist_ok=True)

    grid_rng = random.Random(args.seed ^ 0x9E3779B9)
    grid = {"lengths": {}}
    for length in [int(x) for x in args.lengths.split(",") if x]:
        rows = [texts.exact(grid_rng, length, sentence) for _ in range(args.batch)]
        grid["lengths"][str(length)] = {"texts": rows, "tokens": [texts.count(r) for r in rows]}
    with open(os.path.join(args.out, "grid.json"), "w", encoding="utf-8") as fh:
        json.dump(grid, fh, ensure_ascii=False)

    events = generate_stream(args.seed, texts, args.traces)
    counts = [user_count(e) for e in events]
    total = sum(counts)
    stride = max(1, round(total / max(1, args.sample_messages)))
    sample = [e for i, e in enumerate(events) if i % stride == stride // 2]
    for name, evs in (("stream.jsonl", events), ("sample.jsonl", sample)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as fh:
            for e in evs:
                fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    meta = {
        "seed": args.seed, "traces": args.traces, "tokenizer": os.path.abspath(args.tokenizer),
        "generations": len(events), "user_messages": total,
        "sample_stride": stride, "sample_generations": len(sample),
        "sample_user_messages": sum(c for i, c in enumerate(counts) if i % stride == stride // 2),
        "grid_tokens": {k: v["tokens"] for k, v in grid["lengths"].items()},
    }
    with open(os.path.join(args.out, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    json.dump(meta, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
