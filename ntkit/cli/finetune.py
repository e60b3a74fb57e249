"""``ntkit finetune`` (IA3 / LoRA / full / head on a labelled table) and ``ntkit predict`` (an adapter over sequences)."""

from __future__ import annotations

import json
from pathlib import Path

from .common import add_job_args, add_runtime_args, report_job, runtime


def register(sub) -> None:
    s = sub.add_parser("finetune", help="fine-tune (IA3, LoRA, full or head only) on a labelled table; saves the adapter")
    s.add_argument("train", help="TSV/CSV/parquet with sequence and label columns")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help="adapter folder")
    s.add_argument("--method", choices=["ia3", "lora", "full", "head"], default="ia3")
    s.add_argument("--task", choices=["classification", "regression"], default="classification")
    s.add_argument("--valid", help="validation table (default: a stratified split of train)")
    s.add_argument("--test", help="score this table with the fine-tuned model")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--lr", type=float)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    add_runtime_args(s, batch_tokens=False)
    s.set_defaults(func=finetune)

    s = sub.add_parser("predict", help="predictions of a fine-tuned model (adapter folder) for sequences (FASTA or table)")
    s.add_argument("input", help="FASTA or TSV/CSV/parquet with a sequence column")
    s.add_argument("--adapter", required=True, help="folder written by `ntkit finetune`")
    s.add_argument("--model", help="the base model the adapter was trained on (not needed for full fine-tuning)")
    s.add_argument("--out", required=True, help=".parquet, .tsv or .csv")
    add_job_args(s, "sequences")
    add_runtime_args(s)
    s.set_defaults(func=predict)


def finetune(args) -> int:
    import numpy as np

    from ..finetune import FinetuneConfig, finetune as run_finetune
    from ..jobs import check_output
    from ..labels import read_labelled

    for f in (args.train, args.valid, args.test):
        if f is not None and not Path(f).exists():
            raise FileNotFoundError(f"input not found: {f}")
    check_output(Path(args.out) / "finetune_config.json", [args.train])  # before any training
    seqs, y, classes = read_labelled(args.train, args.task)
    table = lambda path: read_labelled(path, args.task, classes)[:2]  # noqa: E731  (the training classes number every file)
    valid = table(args.valid) if args.valid else None
    base, device = runtime(args, args.model)
    lr = args.lr or {"ia3": 3e-3, "lora": 1e-3, "full": 5e-5, "head": 1e-3}[args.method]
    cfg = FinetuneConfig(method=args.method, task=args.task, n_classes=len(classes) if classes else 1,
                         classes=list(classes.names) if classes else None,
                         epochs=args.epochs, lr=lr, batch_size=args.batch_size, seed=args.seed)
    model = run_finetune(base, seqs, y, cfg, valid=valid, device=device, progress=args.progress)
    n_base = base.num_parameters()
    print(f"{args.method}: {model.trainable_parameters():,} trainable parameters "
          f"({100 * model.trainable_parameters() / n_base:.3f}% of the base model's {n_base:,})")
    print(f"wrote {model.save_adapter(args.out)}" + (f" (classes {list(classes.names)})" if classes else ""))
    if args.test:
        ts, ty = table(args.test)
        pred = model.predict(ts, device=device)
        if args.task == "classification":
            from sklearn.metrics import f1_score, matthews_corrcoef

            print(f"test: MCC {matthews_corrcoef(ty, pred.argmax(1)):.4f}, macro F1 {f1_score(ty, pred.argmax(1), average='macro'):.4f}")
        else:
            from scipy.stats import pearsonr

            print(f"test: Pearson r {pearsonr(ty, pred)[0]:.4f}, MSE {np.mean((pred - ty) ** 2):.4f}")
    return 0


def predict(args) -> int:
    from ..finetune import FINETUNE_CONFIG, FinetunedModel, predict_to_file

    config = Path(args.adapter) / FINETUNE_CONFIG
    if not config.exists():
        raise FileNotFoundError(f"{args.adapter}: not an adapter folder of `ntkit finetune` ({FINETUNE_CONFIG} not found)")
    base, device = runtime(args, None if json.loads(config.read_text())["finetune"]["method"] == "full" else args.model)
    model = FinetunedModel.load_adapter(base, args.adapter)
    res = predict_to_file(model, args.input, args.out, chunk_size=args.chunk_size, shard=args.shard, restart=args.restart,
                          batch_tokens=args.batch_tokens, device=device, progress=args.progress)
    if report_job(res, args.out):
        print(f"wrote {args.out}: {res['sequences']} sequences")
    return 0
