"""The pair heads compared on equal terms: each one trained on Quora and STS together (one shared
encoder, that head on both tasks), same data, budget and seed, on the embedded all-MiniLM-L6-v2.

    python benchmarks/heads.py [--limit 2000] [--epochs 1] [--heads cosine ...] [--set key=value ...]

Short runs: the first ``--limit`` examples of each split (all of STS dev when the limit exceeds it),
one epoch by default. Prints the README table: dev accuracy / Pearson and training seconds per epoch.
"""

from __future__ import annotations

import argparse

from common import BASE_RECIPE, machine, markdown_table, run_recipe, save

PAIR_HEADS = ["cross_encoder", "siamese_concat", "cosine", "bilinear", "relational", "transformer_layer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", nargs="*", choices=PAIR_HEADS, default=PAIR_HEADS)
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--output-root", default="runs/heads-bench")
    args = parser.parse_args()
    rows, records, info = [], {}, {}
    for head in args.heads:
        heads = f"{{quora: {{type: {head}, pooling: mean}}, sts: {{type: {head}, pooling: mean}}}}"
        overrides = ["data.tasks=[quora, sts]", f"model.heads={heads}", f"data.limit={args.limit}",
                     f"train.epochs={args.epochs}", "train.checkpoint_every=0", *args.set]
        trainer, results, wall = run_recipe(BASE_RECIPE, overrides, f"{args.output_root}/{head}")
        best = results["best"]
        info = machine(trainer.device)
        seconds_per_epoch = results["train_seconds"] / args.epochs
        records[head] = {"results": results, "wall_seconds": wall, "config": trainer.config.to_dict()}
        rows.append([head, trainer.model.encoding("quora"), f"{best['quora_acc']:.3f}", f"{best['sts_pearson']:.3f}",
                     f"{seconds_per_epoch:.0f}", f"{results['train_tokens_per_second']:.0f}"])
        print(f"{head}: quora {best['quora_acc']:.4f} sts {best['sts_pearson']:.4f}, {seconds_per_epoch:.0f} s/epoch",
              flush=True)
    table = markdown_table(["head (Quora and STS)", "encoding", "Quora dev acc", "STS dev r", "train s/epoch",
                            "train tok/s"], rows)
    print(f"\nMachine: {info.get('device')}; model all-MiniLM-L6-v2 (embedded); first {args.limit} examples of each "
          f"split; {args.epochs} epoch(s), batch 32, lr 1e-4, mean pooling, seed 11711\n")
    print(table)
    save("heads", {"machine": info, "limit": args.limit, "epochs": args.epochs, "runs": records, "table": table})


if __name__ == "__main__":
    main()
