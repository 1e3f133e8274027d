"""The ONNX export's speed under onnxruntime beside the model in PyTorch, on the same batches.

    python benchmarks/onnx_speed.py [--model RUN/best] [--batch 32] [--length 64] [--repeats 20]

Exports ``--model`` (default: the model benchmarks/serve.py trains) with ``mtbert export --format onnx``,
then times each task's graph on random token batches of ``--batch`` x ``--length`` (no padding; the pair
tasks' Siamese heads get twice the rows): onnxruntime (fp32, its default CPU provider) against the
same TaskGraph in PyTorch, fp32 and in the run's autocast. Median of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from common import REPO, machine, markdown_table, save, timed
from mtbert.inference.export import TaskGraph, export_onnx
from mtbert.multitask import MultitaskModel
from mtbert.precision import resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "runs" / "serve-bench-model" / "best")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = MultitaskModel.from_pretrained(args.model).eval()
    device = torch.device("cpu")
    autocast = resolve_precision("auto", device)
    rows, records = [], {}
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, Path(folder), overwrite=True)
        for task in model.specs:
            graph = TaskGraph(model, task).eval()
            session = onnxruntime.InferenceSession(str(Path(folder) / f"{task}.onnx"))
            rows_in = args.batch * graph.segments
            generator = torch.Generator().manual_seed(0)
            ids = torch.randint(1000, 20000, (rows_in, args.length), generator=generator)
            mask, types = torch.ones_like(ids), torch.zeros_like(ids)
            feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}

            def torch_fp32():
                with torch.no_grad():
                    graph(ids, mask, types)

            def torch_autocast():
                with torch.no_grad(), autocast.autocast():
                    graph(ids, mask, types)

            seconds = {"onnxruntime fp32": timed(lambda: session.run(None, feed), args.repeats, device),
                       "torch fp32": timed(torch_fp32, args.repeats, device),
                       f"torch {autocast.name}": timed(torch_autocast, args.repeats, device)}
            with torch.no_grad():
                difference = float(np.abs(session.run(None, feed)[0] - graph(ids, mask, types).numpy()).max())
            tokens = rows_in * args.length
            for how, s in seconds.items():
                rows.append([task, how, f"{1000 * s:.1f}", f"{tokens / s:,.0f}"])
            records[task] = {"seconds": seconds, "tokens": tokens, "max_abs_difference_vs_torch_fp32": difference}
    info = machine(device)
    table = markdown_table(["task", "runtime", "ms per batch", "tokens/s"], rows)
    shown = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    print(f"\nMachine: {info['device']} (1-min load {info.get('load_average_1min')}); model {shown}; batch "
          f"{args.batch} x {args.length} tokens, median of {args.repeats}\n")
    print(table)
    save("onnx_speed", {"machine": info, "batch": args.batch, "length": args.length, "records": records,
                        "table": table})


if __name__ == "__main__":
    main()
