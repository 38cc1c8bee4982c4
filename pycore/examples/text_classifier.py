"""Which part of Shakespeare is this speech from? A bidirectional LSTM over variable-length text.

    python -m pycore.examples.text_classifier [--data tinyshakespeare/input.txt] [--epochs 6]

tiny Shakespeare (1.1 MB of excerpts from the plays, 7222 speeches) is split in file order
into --sections equal runs of speeches; each speech's label is the run it is in, so
the runs are roughly plays and scenes: the model must pick up their names and topics from
the words (the speaker's name, the speech's first line, is left out). The speeches are
shuffled and split 80/20 into training and test.

    words (N, T_batch) -> Embedding -> bidirectional LSTM(lengths=) -> h_n of both
    directions: the forward one after each speech's last real word, the reverse one after
    its first -> concatenated (N, 2H) -> Linear -> section logits

The batches come from pycore.sequences.SequenceLoader: each is padded to its own longest
speech and, with bucket=True, holds speeches of similar length, and the LSTM skips the
padded steps. After training, one epoch is timed three ways from the same initial weights:
every batch padded to the longest speech in the data (every padded step computed), per-batch
padding with lengths=, and bucketed batches with lengths=.

The file comes from --data, or $PYCORE_DATA/tinyshakespeare/input.txt.
"""
import argparse
import collections
import os
import re

import numpy as np

import pycore
from pycore import functional as F
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.examples import add_run_options, start_run
from pycore.sequences import SequenceLoader, pad_sequences
from pycore.train import fit

PAD, UNKNOWN = 0, 1
WORD = re.compile(r"[a-z']+|[.,;:!?]")


class SpeechClassifier(nn.Module):
    """(N, T) word ids + (N,) lengths -> (N, classes) logits, from both directions' final states.

    Forward only: the calls are recorded and `backward` replays them (pycore/autograd.py),
    sending the head's input gradient back into the two halves of h_n's top layer.
    """

    def __init__(self, vocabulary, classes, embedding=64, hidden=64, dtype=np.float32):
        super().__init__(dtype)
        self.embedding = nn.Embedding(vocabulary, embedding, padding_idx=PAD, dtype=dtype)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True, dtype=dtype)
        self.head = nn.Linear(2 * hidden, classes, dtype=dtype)

    def forward(self, words, lengths=None):
        _, (h_n, _) = self.lstm(self.embedding(words), lengths=lengths)
        top = F.cat([F.select(h_n, 0, -2), F.select(h_n, 0, -1)], dim=1)  # (forward | reverse) of the top layer
        return self.head(top)


def shakespeare_path(data=None):
    """The tiny Shakespeare file: `data`, else $PYCORE_DATA/tinyshakespeare/input.txt."""
    if data is not None:
        return data
    if os.environ.get("PYCORE_DATA"):
        path = os.path.join(os.environ["PYCORE_DATA"], "tinyshakespeare", "input.txt")
        if os.path.exists(path):
            return path
    raise FileNotFoundError("tiny Shakespeare not found: pass --data FILE (input.txt of karpathy/char-rnn's "
                            "tinyshakespeare) or set PYCORE_DATA to the folder holding tinyshakespeare/")


def labelled_speeches(text, sections):
    """(list of word lists, int64 labels): each speech (a block 'SPEAKER:\\nlines' between blank
    lines) without its speaker line, labelled by which of `sections` equal runs it is in."""
    bodies = [block.split("\n", 1)[1] for block in text.split("\n\n") if "\n" in block.strip()]
    words = [WORD.findall(body.lower()) for body in bodies]
    keep = [i for i, w in enumerate(words) if w]
    labels = np.arange(len(words)) * sections // len(words)
    return [words[i] for i in keep], labels[keep].astype(np.int64)


def build_vocabulary(speeches, min_count=2):
    """{word: id} for words seen at least min_count times; ids from 2 (0 padding, 1 unknown)."""
    counts = collections.Counter(word for speech in speeches for word in speech)
    kept = sorted(word for word, count in counts.items() if count >= min_count)
    return {word: i + 2 for i, word in enumerate(kept)}


def encode(speeches, vocabulary, max_words):
    """Speeches -> list of int64 id arrays, each cut to its first max_words words."""
    return [np.array([vocabulary.get(w, UNKNOWN) for w in speech[:max_words]], dtype=np.int64) for speech in speeches]


def dataset(path, sections, max_words, seed=0, test_fraction=0.2, limit=None):
    """((train ids, labels), (test ids, labels), vocabulary size) from the text file."""
    with open(path, encoding="utf-8") as f:
        speeches, labels = labelled_speeches(f.read(), sections)
    order = np.random.default_rng(seed).permutation(len(speeches))
    if limit:
        order = order[:limit]
    cut = int(len(order) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    vocabulary = build_vocabulary([speeches[i] for i in train])
    ids = encode(speeches, vocabulary, max_words)
    return ([ids[i] for i in train], labels[train]), ([ids[i] for i in test], labels[test]), len(vocabulary) + 2


def epoch_seconds(initial_state, model_args, loader, lr):
    """Seconds for one training epoch over `loader` of a model started from initial_state."""
    model = SpeechClassifier(*model_args)
    model.load_state_dict(initial_state)
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=lr), loader, 1, verbose=0)
    return history["time"][0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.text_classifier",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="FILE",
                   help="tiny Shakespeare's input.txt (default: $PYCORE_DATA/tinyshakespeare)")
    p.add_argument("--sections", type=int, default=8, help="classes: equal runs of speeches in file order")
    p.add_argument("--max-words", type=int, default=200, help="speeches are cut to their first MAX_WORDS words")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--limit", type=int, help="use only LIMIT speeches (a quick run)")
    p.add_argument("--no-timing", action="store_true", help="skip the padding/bucketing epoch timings")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv=None):
    """Returns {"accuracy", "baseline", "history", "seconds": {way: epoch seconds} or None}."""
    args = parse_args(argv)
    start_run(args)
    (x_train, y_train), (x_test, y_test), vocabulary = dataset(shakespeare_path(args.data), args.sections,
                                                                args.max_words, args.seed, limit=args.limit)
    lengths = np.array([len(s) for s in x_train])
    majority = np.bincount(y_train, minlength=args.sections).argmax()
    baseline = float(np.mean(y_test == majority))
    print(f"tiny Shakespeare: {len(x_train)} training and {len(x_test)} test speeches of 1..{lengths.max()} words "
          f"(median {int(np.median(lengths))}), {vocabulary} word ids, {args.sections} sections; "
          f"majority-class baseline {100 * baseline:.1f}% on test", flush=True)

    model_args = (vocabulary, args.sections, args.embedding, args.hidden)
    model = SpeechClassifier(*model_args)
    initial_state = {k: np.array(v) for k, v in model.state_dict().items()}
    train_loader = SequenceLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                                  bucket=True, padding_value=PAD)
    test_loader = SequenceLoader(x_test, y_test, batch_size=256, bucket=True, padding_value=PAD)
    history = fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=args.lr), train_loader,
                  args.epochs, val_loader=test_loader, verbose=2)
    accuracy = history["val_accuracy"][-1]
    print(f"test accuracy {100 * accuracy:.1f}% against the majority-class baseline {100 * baseline:.1f}% "
          f"({args.sections} sections)", flush=True)

    seconds = None
    if not args.no_timing:
        padded_all, _ = pad_sequences(x_train, PAD)  # every batch as long as the longest speech
        ways = {"padded to the global maximum": DataLoader(padded_all, y_train, batch_size=args.batch_size,
                                                           shuffle=True, seed=args.seed),
                "per-batch padding + lengths=": SequenceLoader(x_train, y_train, batch_size=args.batch_size,
                                                                shuffle=True, seed=args.seed, padding_value=PAD),
                "bucketed + lengths=": SequenceLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True,
                                                      seed=args.seed, bucket=True, padding_value=PAD)}
        seconds = {way: epoch_seconds(initial_state, model_args, loader, args.lr) for way, loader in ways.items()}
        slowest = seconds["padded to the global maximum"]
        print(f"one training epoch, {pycore.get_num_threads()} threads:")
        for way, s in seconds.items():
            print(f"  {way:30s} {s:7.2f} s  (speed-up {slowest / s:.1f}x)")
    return {"accuracy": accuracy, "baseline": baseline, "history": history, "seconds": seconds}


if __name__ == "__main__":
    main()
