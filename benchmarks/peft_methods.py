"""Parameter-efficient fine-tuning compared on the multitask data: each method one short run of the
base multitask recipe (recipes/multitask-base.yaml) on the embedded all-MiniLM-L6-v2, same data, seed and one epoch.

    python benchmarks/peft_methods.py [--shrink 20] [--eval-limit 600] [--only lora sam ...] [--set key=value ...]

The table gives each method's dev scores, the parameters that train (and their share of the model),
the bytes its best/ directory takes on disk (a delta directory when the encoder is partly frozen:
tokenizer files included, base encoder not), and the training seconds of the epoch (for SAM, the
gradient pass over the training data is a separate column). Methods that train only new modules use
a 10× larger learning rate than full fine-tuning (1e-3 vs 1e-4), the usual practice for adapters and
LoRA; LHUC gets 1e-2 (a few thousand scales).
"""

from __future__ import annotations

from common import BASE_RECIPE, machine, run_recipe, save_variants, variant_overrides, variants_parser

FROZEN = {"model.freeze": "encoder", "train.lr": 1.0e-3}
VARIANTS = {
    "full fine-tuning": {},
    "heads only (frozen encoder)": FROZEN,
    "top 2 layers": {"model.freeze": "encoder", "model.trainable_top_layers": 2},
    "adapter after feed-forward, per task": {**FROZEN, "model.peft": {"adapter": {"size": 64}}},
    "adapter after layer norm, per task": {**FROZEN, "model.peft": {"adapter": {"size": 64, "placement": "layer_norm"}}},
    "adapter Houlsby (attn + FF), shared": {**FROZEN, "model.peft": {"adapter": {"size": 64, "placement": "houlsby",
                                                                             "per_task": False}}},
    "PALs, per task": {**FROZEN, "model.peft": {"pals": {"size": 204, "heads": 12}}},
    "LHUC, per task": {**FROZEN, "train.lr": 1.0e-2, "model.peft": {"lhuc": {}}},
    "LoRA q,v r=8, per task": {**FROZEN, "model.peft": {"lora": {"rank": 8}}},
    "LoRA q,v r=8, shared": {**FROZEN, "model.peft": {"lora": {"rank": 8, "per_task": False}}},
    "SAM 30%": {"model.selection": "sam", "model.selection_options": {"fraction": 0.3}},
    "random 30%": {"model.selection": "random", "model.selection_options": {"fraction": 0.3}},
    "BitFit": {"model.selection": "bitfit", "train.lr": 1.0e-3},
}


def main() -> None:
    args = variants_parser(__doc__, VARIANTS, "runs/peft-bench").parse_args()
    rows, records, info = [], {}, {}
    for index, name in enumerate(args.only):
        overrides = variant_overrides(VARIANTS[name], args)
        trainer, results, wall = run_recipe(BASE_RECIPE, overrides,
                                            f"{args.output_root}/{index:02d}")
        best, counts = results["best"], results["parameters"]["model"]
        info = machine(trainer.device)
        records[name] = {"results": results, "wall_seconds": wall, "config": trainer.config.to_dict()}
        selection = results["parameter_selection"]
        rows.append([name, f"{best['sst_acc']:.3f}", f"{best['quora_acc']:.3f}", f"{best['sts_pearson']:.3f}",
                     f"{best['composite']:.3f}", f"{counts['tunable'] / 1e6:.3f}M",
                     f"{100 * counts['tunable_share']:.2f}%", f"{results['saved_bytes'] / 2**20:.1f}",
                     f"{results['train_seconds']:.0f}", f"{selection['seconds']:.0f}" if selection else "",
                     f"{trainer.config.train.lr:g}"])
        print(f"{name}: composite {best['composite']:.4f}, {results['train_seconds']:.0f} s", flush=True)
    save_variants("peft", args, info, records, ["method", "SST acc", "Quora acc", "STS r", "composite", "tunable",
                  "share", "best/ MiB", "train s/epoch", "selection s", "lr"], rows,
                  "all-MiniLM-L6-v2 (embedded, 22.7M parameters)", "1 epoch, batch 32, mean pooling, seed 11711")


if __name__ == "__main__":
    main()
