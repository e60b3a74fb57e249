"""``ntkit finetune`` (IA3 / LoRA / full / head on a labelled table) and ``ntkit predict`` (an adapter over sequences)."""

from __future__ import annotations

from pathlib import Path

from ntkit.cli.common import (
    FORCE_HELP,
    MODEL_HELP,
    add_job_args,
    add_runtime_args,
    add_sequence_columns,
    add_species_arg,
    positive_int,
    report_job,
    runtime,
)


def register(sub) -> None:
    from ntkit.tasks.options import LEARNING_RATES
    from ntkit.tasks.options import FinetuneConfig as C

    s = sub.add_parser("finetune", help="fine-tune (IA3, LoRA, full or head only) on a labelled table; saves the adapter")
    s.add_argument("train", help="TSV/CSV/parquet with a sequence (or seq) column and a label column")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--out", required=True, help="adapter folder (peft adapter, head, classes, base fingerprint)")
    s.add_argument("--method", choices=["ia3", "lora", "full", "head"], default=C.method,
                   help="ia3 / lora: peft adapters; full: every weight; head: the base frozen")
    s.add_argument("--task", choices=["classification", "regression"], default=C.task, help="class labels, or numeric targets")
    s.add_argument("--task-name", help="for a table with a 'task' column (several tasks): the task to train on")
    s.add_argument("--sequence-column", help="column of the sequences in the tables (default: sequence, seq or Sequence)")
    s.add_argument("--label-column", default="label", help="column of the labels (class names or numbers) in the tables")
    s.add_argument("--valid", help="validation table for early stopping (default: a stratified split of train)")
    s.add_argument("--test", help="score this table with the fine-tuned model; predictions written into --out")
    s.add_argument("--epochs", type=positive_int(), default=C.epochs, help="epochs at most (early stopping on validation MCC / MSE)")
    s.add_argument("--lr", type=float, help="learning rate (default per method: " + ", ".join(f"{k} {v:g}" for k, v in LEARNING_RATES.items()) + ")")
    s.add_argument("--batch-size", type=positive_int(), default=C.batch_size, help="sequences per step")
    s.add_argument("--seed", type=int, default=C.seed, help="seed of the split, the head and the order of batches")
    s.add_argument("--reverse-complement", action="store_true", default=C.reverse_complement,
                   help="both strands: train on a random strand of each sequence, predict the mean over both (saved with the adapter)")
    add_species_arg(s)
    add_runtime_args(s, batch_tokens=False)
    s.set_defaults(func=finetune)

    s = sub.add_parser("predict", help="predictions of a fine-tuned model (adapter folder) for sequences (FASTA or table)")
    s.add_argument("input", help="FASTA or TSV/CSV/parquet with a sequence column")
    s.add_argument("--adapter", required=True, help="folder written by `ntkit finetune`, or a peft adapter saved on ntkit.hf.NTForSequenceClassification")
    s.add_argument("--model", help="the base model the adapter was trained on (not needed for full fine-tuning)")
    s.add_argument("--out", required=True, help=".parquet, .tsv or .csv: id, the input's columns, prob_<class> and predicted (or prediction)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.add_argument("--species", help="a post-trained NTv3: must be the species the adapter was trained with (default: that species)")
    add_sequence_columns(s)
    add_job_args(s, "sequences")
    add_runtime_args(s)
    s.set_defaults(func=predict)


def finetune(args) -> int:
    import warnings

    import numpy as np

    from ntkit.io.labels import read_labelled
    from ntkit.runtime.jobs import check_output, write_dataframe
    from ntkit.tasks.finetune import FinetuneConfig
    from ntkit.tasks.finetune import finetune as run_finetune

    for f in (args.train, args.valid, args.test):
        if f is not None and not Path(f).exists():
            raise FileNotFoundError(f"input not found: {f}")
    check_output(Path(args.out) / "finetune_config.json", [args.train])  # before any training
    cols = {"task_name": args.task_name, "label_column": args.label_column, "sequence_column": args.sequence_column}
    seqs, y, classes = read_labelled(args.train, args.task, **cols)
    table = lambda path: read_labelled(path, args.task, classes, **cols)[:2]  # noqa: E731  (the training classes number every file)
    valid = table(args.valid) if args.valid else None
    base, rt = runtime(args, args.model)
    cfg = FinetuneConfig(method=args.method, task=args.task, n_classes=len(classes) if classes else 1,
                         classes=list(classes.names) if classes else None,
                         epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, species=args.species,
                         reverse_complement=args.reverse_complement)
    model = run_finetune(base, seqs, y, cfg, valid=valid, runtime=rt)
    n_base = base.num_parameters()
    print(f"{args.method}: {model.trainable_parameters():,} trainable parameters "
          f"({100 * model.trainable_parameters() / n_base:.3f}% of the base model's {n_base:,}), lr {cfg.lr:g}")
    print(f"wrote {model.save_adapter(args.out)}" + (f" (classes {list(classes.names)})" if classes else ""))
    if args.test:
        import pandas as pd

        ts, ty = table(args.test)
        pred = model.predict(ts, runtime=rt.replace(progress=False))
        out = Path(args.out) / "test_predictions.tsv"
        if args.task == "classification":
            from sklearn.metrics import f1_score, matthews_corrcoef

            names = list(classes.names)
            called = pred.argmax(1)
            df = pd.DataFrame({"label": [names[k] for k in ty], "predicted": [names[k] for k in called],
                               **{f"prob_{n}": pred[:, k] for k, n in enumerate(names)}})
            print(f"test ({len(ty)} sequences): MCC {matthews_corrcoef(ty, called):.4f}, macro F1 {f1_score(ty, called, average='macro'):.4f}")
            if len(set(called.tolist())) == 1:
                warnings.warn(f"the model predicts one class ({names[int(called[0])]}) for every test sequence: MCC is 0 by "
                              "definition; train longer (--epochs), with another --lr, or on more data")
        else:
            from scipy.stats import pearsonr

            df = pd.DataFrame({"label": ty, "prediction": pred})
            print(f"test ({len(ty)} sequences): Pearson r {pearsonr(ty, pred)[0]:.4f}, MSE {np.mean((pred - ty) ** 2):.4f}")
        print(f"wrote {write_dataframe(df, out)}")
    return 0


def predict(args) -> int:
    from ntkit.models.adapters import CONFIG as PEFT_CONFIG
    from ntkit.tasks.finetune import FINETUNE_CONFIG, FinetunedModel, holds_base, predict_to_file

    d = Path(args.adapter)
    if not (d / FINETUNE_CONFIG).exists() and not (d / PEFT_CONFIG).exists():  # a peft adapter alone: saved on ntkit.hf's classes
        raise FileNotFoundError(f"{args.adapter}: neither an adapter folder of `ntkit finetune` ({FINETUNE_CONFIG}) nor a peft "
                                f"adapter ({PEFT_CONFIG})")
    base, rt = runtime(args, None if holds_base(args.adapter) else args.model)
    model = FinetunedModel.load_adapter(base, args.adapter, force=args.force, species=args.species)
    res = predict_to_file(model, args.input, args.out, sequence_column=args.sequence_column, id_column=args.id_column,
                          chunk_size=args.chunk_size, shard=args.shard, restart=args.restart,
                          runtime=rt)
    if report_job(res, args.out):
        print(f"wrote {args.out}: {res['sequences']} sequences")
    return 0
