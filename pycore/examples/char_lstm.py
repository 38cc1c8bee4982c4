"""A character-level LSTM trained with truncated BPTT, printing samples as it learns.

    python -m pycore.examples.char_lstm                                  # Python's own standard library
    python -m pycore.examples.char_lstm --data tinyshakespeare/input.txt --steps 2000

With no --data it trains on a corpus every Python install carries: the standard library's
own .py sources (the first few hundred KB, files in sorted order), so it runs offline.
The text is split 90/10 into training and validation, laid out as --batch-size parallel
streams, and cut into --seq-len character chunks; the LSTM state is carried from chunk to
chunk and gradients stop at chunk boundaries. Validation loss is in nats per character.

Data-parallel over MPI (pip install ".[distributed]"): the --batch-size streams are split
over the ranks (rank r takes its consecutive share of them), gradients are averaged, so
the run follows the single-process one; rank 0 prints, samples and saves.

    mpiexec -n 2 python -m pycore.examples.char_lstm --distributed
"""
import argparse
import math
import os
import sysconfig
import time

import pycore
import pycore.distributed as dist
from pycore.datasets import CharVocab, StreamBatches, split_corpus
from pycore.examples import add_run_options
from pycore.train import CharModel, evaluate_char_model, sample, train_char_model


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
    add_run_options(p)
    p.add_argument("--save", metavar="PATH", help="save the model, optimizer and vocabulary here")
    p.add_argument("--quick", action="store_true", help="a smoke test: a tiny model, 10 steps")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of `mpiexec -n N` (threads default to each rank's share)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.distributed:
        dist.init(threads=args.threads)
    elif args.threads:
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
    if args.distributed:
        return train_distributed(args, vocab, train_ids, val_ids, prompt, source)
    print(f"char-LSTM on {source}: {len(text):,} characters, {len(vocab)} distinct; "
          f"{args.layers} layers of {args.hidden}, seq {args.seq_len}, batch {args.batch_size}, "
          f"Adam {args.lr}, {pycore.get_num_threads()} threads", flush=True)

    model = CharModel(len(vocab), args.hidden, args.layers, args.embedding)
    optimizer = pycore.optim.Adam(model.parameters(), lr=args.lr)

    def report(step, loss):
        if step % args.eval_every == 0 and step != args.steps:
            text = sample(model, vocab, prompt, args.sample_length // 3, args.temperature, seed=step)
            print(f"--- sample at step {step} ---\n{text}\n---", flush=True)

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


def train_distributed(args, vocab, train_ids, val_ids, prompt, source):
    """train_char_model's loop data-parallel: each rank its share of the streams, DDP, Adam,
    clipping (the averaged gradients are identical on every rank, so is the clipping)."""
    ranks = dist.world_size()
    dist.print_main(f"char-LSTM on {source}: {len(train_ids) + len(val_ids):,} characters, {len(vocab)} distinct; "
                    f"{args.layers} layers of {args.hidden}, seq {args.seq_len}, batch {args.batch_size} = "
                    f"{ranks} ranks x {args.batch_size // ranks}, Adam {args.lr}, "
                    f"{pycore.get_num_threads()} threads per rank")
    model = dist.DistributedDataParallel(CharModel(len(vocab), args.hidden, args.layers, args.embedding))
    optimizer = pycore.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = pycore.nn.CrossEntropyLoss()
    streams = StreamBatches(dist.shard_stream(train_ids, args.batch_size), args.batch_size // ranks, args.seq_len)
    my_val_ids = dist.shard_stream(val_ids, args.batch_size)  # equal shares: the mean of means is the mean
    step, train_seconds, chars, val_loss = 0, 0.0, 0, float("nan")
    while step < args.steps:
        state = None
        for x, y in streams:
            if step >= args.steps:
                break
            started = time.perf_counter()
            logits, state = model(x, state)
            loss = float(loss_fn(logits, y))
            if not math.isfinite(loss):
                raise FloatingPointError(f"char_lstm: the loss is {loss} at step {step + 1} on rank {dist.rank()}")
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            pycore.optim.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            step += 1
            train_seconds += time.perf_counter() - started
            chars += y.size * ranks
            if step % args.eval_every == 0 or step == args.steps:
                val_loss = dist.allreduce_mean(evaluate_char_model(model, my_val_ids, args.batch_size // ranks,
                                                                   args.seq_len))
                dist.print_main(f"step {step}/{args.steps}  loss {dist.allreduce_mean(loss):.4f}  val_loss "
                                f"{val_loss:.4f} nats/char  {chars / train_seconds:,.0f} chars/s")
    dist.print_main(f"validation loss {val_loss:.4f} nats/char after {args.steps} steps; {chars / train_seconds:,.0f} "
                    f"training chars/s on {ranks} ranks (all-reduce "
                    f"{100 * model.communication_seconds / train_seconds:.0f}% of the training time)")
    if dist.is_main():
        print(f"--- sample (temperature {args.temperature}) ---")
        print(sample(model.module, vocab, prompt, args.sample_length, args.temperature, seed=args.seed), flush=True)
        if args.save:
            pycore.save(args.save, model, optimizer, vocab=vocab.state_dict(), step=args.steps, val_loss=val_loss,
                        hparams={"hidden": args.hidden, "layers": args.layers, "embedding": args.embedding,
                                 "seq_len": args.seq_len, "batch_size": args.batch_size, "lr": args.lr,
                                 "ranks": ranks})
            print(f"saved to {os.path.abspath(args.save)}", flush=True)
    return val_loss


if __name__ == "__main__":
    main()
