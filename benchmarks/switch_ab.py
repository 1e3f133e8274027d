"""One training or inference step with an environment switch off and on, alternating in one process.

Why: this machine's speed drifts by a fifth between minutes, so two runs of encoder_speed.py minutes
apart cannot show a change of a few percent. Here the same model, optimizer and batch (encoder_speed.py's:
32 x 64 tokens, no padding, bf16 autocast where the CPU has it) are timed in rounds, each round timing
the switch off and on back to back (the order alternates between rounds), so drift hits both alike;
the per-round ratio is the number to read. The switches are the ones the package reads on every call
(``MTBERT_COMPILED_DROPOUT``, ``MTBERT_COMPILED_ADAMW``).

    python benchmarks/switch_ab.py --switch MTBERT_COMPILED_DROPOUT [--models all-MiniLM-L6-v2,bert-base]
        [--mode train] [--rounds 8] [--steps 5] [--name NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from common import machine, markdown_table, save
from encoder_speed import BATCH_SHAPE, fixed_batch, load_ours, measure
from mtbert import AdamW
from mtbert.precision import Precision, cpu_has_native_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switch", required=True, help="environment variable set to 0 (off) and 1 (on)")
    parser.add_argument("--models", default="all-MiniLM-L6-v2,bert-base")
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting and round (median kept)")
    parser.add_argument("--name", help="results file name (default switch_ab_<switch>)")
    args = parser.parse_args()
    device = torch.device("cpu")
    precision = Precision("bf16" if cpu_has_native_bf16() else "fp32", device)
    batch = fixed_batch(device)
    tokens = BATCH_SHAPE[0] * BATCH_SHAPE[1]
    rows, records = [], []
    for name in args.models.split(","):
        model = load_ours(name, device)
        optimizer = AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
        rates = {"0": [], "1": []}
        for round_number in range(args.rounds):
            order = ("0", "1") if round_number % 2 == 0 else ("1", "0")
            for setting in order:
                os.environ[args.switch] = setting
                rates[setting].append(tokens / measure(model, optimizer, batch, precision, args.steps,
                                                       args.mode == "train"))
            print(name, round_number, {k: round(v[-1]) for k, v in rates.items()}, flush=True)
        ratios = [on / off for off, on in zip(rates["0"], rates["1"])]
        record = {"model": name, "mode": args.mode, "switch": args.switch, "off_tok_s": rates["0"],
                  "on_tok_s": rates["1"], "ratios": ratios, "median_ratio": statistics.median(ratios)}
        records.append(record)
        rows.append([name, args.mode, f"{statistics.median(rates['0']):,.0f}", f"{statistics.median(rates['1']):,.0f}",
                     f"{statistics.median(ratios):.3f}x", f"{min(ratios):.3f}-{max(ratios):.3f}x"])
    os.environ.pop(args.switch, None)
    info = machine(device)
    info["load_average_after"] = os.getloadavg()[0]
    table = markdown_table(["model", "step", f"{args.switch}=0 tok/s", f"{args.switch}=1 tok/s",
                            "median ratio", "ratio range"], rows)
    print(f"\nMachine: {info['device']}; torch {info['torch']}; {precision.name}; batch {BATCH_SHAPE[0]} x "
          f"{BATCH_SHAPE[1]}; {args.rounds} rounds of {args.steps} steps per setting\n")
    print(table)
    save(args.name or f"switch_ab_{args.switch.lower()}", {"machine": info, "batch": list(BATCH_SHAPE),
                                                         "precision": precision.name, "rounds": args.rounds,
                                                         "steps": args.steps, "results": records, "table": table})


if __name__ == "__main__":
    main()
