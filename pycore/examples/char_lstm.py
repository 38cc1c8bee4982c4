"""A character-level LSTM trained with truncated BPTT, printing samples as it learns.

    python -m pycore.examples.char_lstm                                  # Python's own standard library
    python -m pycore.examples.char_lstm --data tinyshakespeare/input.txt --steps 2000

With no --data it trains on a corpus every Python install carries: the standard library's
own .py sources (the first few hundred KB, files in sorted order), so it runs offline.
The text is split 90/10 into training and validation, laid out as --batch-size parallel
streams, and cut into --seq-len character chunks; the LSTM state is carried from chunk to
chunk and gradients stop at chunk boundaries. Validation loss is in nats per character.
"""
import argparse
import os
import sysconfig

import pycore
from pycore.datasets import CharVocab, split_corpus
from pycore.train import CharModel, sample, train_char_model


def stdlib_corpus(max_chars=400_000):
    """The standard library's top-level .py files, concatenated in sorted order up to max_chars."""
    folder = sysconfig.get_paths()["stdlib"]
    parts, size = [], 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= max_chars:
            break
    if not parts:
        raise FileNotFoundError(f"no .py files in the standard library folder {folder}; pass --data FILE")
    return "".join(parts)[:max_chars]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.char_lstm", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="FILE", help="a UTF-8 text file (default: the standard library's sources)")
    p.add_argument("--max-chars", type=int, default=400_000, help="corpus size taken from the standard library")
    p.add_argument("--steps", type=int, default=500, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=32, help="parallel streams")
    p.add_argument("--seq-len", type=int, default=100, help="characters per truncated-BPTT chunk")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--clip", type=float, default=5.0, help="gradient norm clipping")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--prompt", default=None, help="start of the samples (default: the corpus' first line)")
    p.add_argument("--sample-length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--save", metavar="PATH", help="save the model, optimizer and vocabulary here")
    p.add_argument("--quick", action="store_true", help="a smoke test: a tiny model, 10 steps")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        pycore.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.hidden, args.layers, args.embedding = 10, 32, 1, 16
        args.seq_len, args.batch_size, args.eval_every, args.sample_length = 20, 8, 5, 60
        args.max_chars = min(args.max_chars, 50_000)
    pycore.manual_seed(args.seed)
    if args.data:
        with open(args.data, encoding="utf-8") as f:
            text = f.read()
        source = args.data
    else:
        text = stdlib_corpus(args.max_chars)
        source = "the Python standard library's sources"
    vocab = CharVocab(text)
    train_ids, val_ids = split_corpus(vocab.encode(text), val_fraction=0.1)
    prompt = args.prompt or text.split("\n", 1)[0][:40] or text[:1]
    print(f"char-LSTM on {source}: {len(text):,} characters, {len(vocab)} distinct; "
          f"{args.layers} layers of {args.hidden}, seq {args.seq_len}, batch {args.batch_size}, "
          f"Adam {args.lr}, {pycore.get_num_threads()} threads", flush=True)

    model = CharModel(len(vocab), args.hidden, args.layers, args.embedding)
    optimizer = pycore.optim.Adam(model.parameters(), lr=args.lr)

    def report(step, loss):
        if step % args.eval_every == 0 and step != args.steps:
            print(f"--- sample at step {step} ---\n{sample(model, vocab, prompt, args.sample_length // 3, args.temperature, seed=step)}\n---", flush=True)

    history = train_char_model(model, train_ids, val_ids, steps=args.steps, batch_size=args.batch_size,
                               seq_len=args.seq_len, optimizer=optimizer, clip_grad_norm=args.clip,
                               eval_every=args.eval_every, verbose=True, on_step=report)
    print(f"validation loss {history['val_loss'][-1]:.4f} nats/char after {args.steps} steps; "
          f"{history['chars_per_s']:,.0f} training chars/s")
    print(f"--- sample (temperature {args.temperature}) ---")
    print(sample(model, vocab, prompt, args.sample_length, args.temperature, seed=args.seed))
    if args.save:
        pycore.save(args.save, model, optimizer, vocab=vocab.state_dict(), step=args.steps,
                    val_loss=history["val_loss"][-1],
                    hparams={"hidden": args.hidden, "layers": args.layers, "embedding": args.embedding,
                             "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr})
        print(f"saved to {os.path.abspath(args.save)}")
    return history


if __name__ == "__main__":
    main()
