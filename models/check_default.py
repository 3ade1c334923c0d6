#!/usr/bin/env python3
"""Check the default (VADER lexicon) bundle.

    python models/check_default.py --model DIR [--verbose]

1. The required label checks (exit status 1 if one fails).
2. Label agreement of the ONNX model (ONNX Runtime + HF tokenizers) with
   vaderSentiment's own SentimentIntensityAnalyzer on built-in sentences
   (VADER label: compound >= 0.05 positive, <= -0.05 negative, else neutral).
3. Batch (padded) vs batch-1 logits.
"""

import argparse
import os
import sys

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ort_reference import Bundle  # noqa: E402

REQUIRED = [
    ("I love this, thank you!", "positive", True),
    ("this is broken and I hate it", "negative", True),
    ("what time is the meeting", "neutral", True),
    ("this is not good", "negative", True),
    ("I don't love it", "positive", False),  # must NOT be positive
]

SENTENCES = [
    # plain positive / negative / neutral
    "I love this, thank you!",
    "this is broken and I hate it",
    "what time is the meeting",
    "Can you summarize this article for me?",
    "Please translate the following paragraph into French.",
    "Write a Python function that reverses a list.",
    "The weather today is sunny and pleasant.",
    "This answer is wrong and useless.",
    "Great job, that was really helpful!",
    "Thanks, that works perfectly.",
    "I'm frustrated, nothing you suggest works.",
    "The meeting was moved to Thursday at 3pm.",
    "You are amazing!!!",
    "This is the worst response I have ever seen.",
    "How many tokens does this prompt use?",
    "I am so happy with the results",
    "That is terrible advice.",
    "List the capitals of European countries.",
    # negation
    "this is not good",
    "I don't love it",
    "It isn't bad at all",
    "I never liked this tool",
    "Your code doesn't work and I'm annoyed",
    "This is not a problem",
    "Nothing about this is helpful",
    "I can't say I enjoyed it",
    "no problems so far",
    "There is no good answer here",
    # boosters / dampeners
    "This is very good",
    "This is extremely bad",
    "It was slightly disappointing",
    "The movie was kind of boring",
    "It's somewhat useful",
    "absolutely fantastic work",
    "barely acceptable",
    # but
    "The answer was good, but the code is broken",
    "I was angry at first but now I'm happy",
    "It's fine but could be better",
    # punctuation emphasis and emoticons/emoji
    "Wow, thank you so much!!",
    "Why is this failing again??",
    "This is great :)",
    "That's sad :(",
    "I love it \U0001F60D",
    "ugh \U0001F621",
    # mixed / longer
    "The first draft was awful, the second one is excellent.",
    "I appreciate the effort, though the result is disappointing.",
    "Sorry to bother you, could you check my essay?",
    "Honestly this is the best assistant I have used, I love it",
    "This bug is killing me, please help",
    "Fine.",
    "The report looks okay to me",
    "I hate Mondays, but this made my day",
    "Stop giving me wrong answers, it's really annoying",
    "I'm worried the deadline is too tight",
    # known weak spots of the compiled model (caps, idioms, punctuation positions)
    "This is GOOD but the docs are bad",
    "I have never been so happy",
    "It is not... good",
    "At least it isn't a horrible book.",
    "ok!",
    "Without a doubt, an excellent idea.",
]


def vader_label(analyzer, text):
    c = analyzer.polarity_scores(text)["compound"]
    if c >= 0.05:
        return "positive", c
    if c <= -0.05:
        return "negative", c
    return "neutral", c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--verbose", action="store_true", help="print every sentence")
    args = ap.parse_args()

    b = Bundle(args.model)
    analyzer = SentimentIntensityAnalyzer()

    ok = True
    print("required label checks:")
    for text, label, must in REQUIRED:
        lg = b.run_single(b.encode(text))
        got = b.label(lg)
        passed = (got == label) if must else (got != label)
        ok &= passed
        probs = " ".join(f"{k}={v:.3f}" for k, v in b.probs(lg).items())
        want = label if must else f"not {label}"
        print(f"  [{'ok' if passed else 'FAIL'}] {text!r}: {got} (want {want}; {probs})")

    agree = 0
    rows = []
    for text in SENTENCES:
        lg = b.run_single(b.encode(text))
        got = b.label(lg)
        want, c = vader_label(analyzer, text)
        # model compound recovered from the logits: pos - neg = 2k * compound
        k = float(b.config.get("logit_scale", 12.0))
        mc = (lg[2] - lg[0]) / (2 * k)
        agree += got == want
        rows.append((got == want, text, got, want, mc, c))
    diffs = np.array([abs(mc - c) for _, _, _, _, mc, c in rows])
    print(f"\ncompound |model - vader|: mean {diffs.mean():.3f}, max {diffs.max():.3f}, "
          f"within 0.01 for {int((diffs < 0.01).sum())}/{len(rows)}")
    print(f"agreement with vaderSentiment {analyzer.__class__.__name__}: "
          f"{agree}/{len(SENTENCES)} = {agree / len(SENTENCES):.1%}")
    for same, text, got, want, mc, c in rows:
        if args.verbose or not same:
            print(f"  [{'same' if same else 'DIFF'}] {text!r}: model {got} ({mc:+.3f}) vs vader {want} ({c:+.3f})")

    ids = [b.encode(t) for t in SENTENCES]
    single = np.stack([b.run_single(x) for x in ids])
    _, _, batch = b.run_batch(ids)
    print(f"\nbatch vs batch-1 max |logit diff|: {float(np.max(np.abs(single - batch))):.3g}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
