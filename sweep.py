"""Compares training recipes at one budget over several seeds: a choice is kept only if it beats
the spread. Each run trains with train.py, then test.py scores it on the validation split (where
choices are made and the operating threshold is chosen), on the test split (what is reported)
and, for the robustness table, on the robustness evaluations of runs.EVALUATIONS the data has
(other cameras, references cut from scenes or lit from behind, relit scenes, everyday meshes).

    python sweep.py run default --seeds 0 1                                 # train.py's defaults
    python sweep.py run sum --seeds 0 1 -- --contrastive-reduction sum      # flags after --
    python sweep.py table                                                   # every recipe, markdown

Runs go to SWEEP_DIR/RECIPE/seedS (default runs/sweep/). Rerunning carries on: a finished seed
is skipped, a killed one resumes from its last checkpoint, and a seed trained before an
evaluation existed gets it on the next run. Runtime: one train.py run and four test.py runs per
seed (~15 min per seed at the defaults on a 2-core CPU).
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np

import hyperparameters
from runs import EVALUATIONS, chooses_threshold, evaluation_flags, in_data
from util import DataError, atomic_write, exits_in_one_line, huge_pages_env, read_json

SPLITS = ("validation", "test")  # a seed counts once tested on both
COLUMNS = (  # (metrics.json key, header): higher is better except false positives
    ("average_precision", "per-cell AP"),
    ("box_ap50", "box AP50"),
    ("coco_ap50", "COCO AP50"),
    ("box_recall", "recall at threshold"),
    ("box_ap50_95", "AP[.50:.95]"),
    ("absent_false_positives_per_query", "FP / absent query"),
    ("retrieval_recall@1", "recall@1"),
)


SWEEPS_OWN = {"run_dir", "seed", "data_dir", "resume", "overwrite"}  # train.py's flags that sweep.py sets per seed
RECIPE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def seed_dir(sweep_dir, recipe, seed):
    return os.path.join(sweep_dir, recipe, f"seed{seed}")


def check_recipe(sweep_dir, recipe, flags):
    """Records a new recipe's flags, or a DataError if RECIPE was swept with other flags."""
    path = os.path.join(sweep_dir, recipe, "recipe.json")
    if os.path.exists(path):
        recorded = read_json(path)["flags"]
        if recorded != flags:
            raise DataError(f"{path}: recipe {recipe!r} was run with flags {recorded}, not {flags}: give another "
                            "name, or the same flags")
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        json.dump({"flags": flags}, f)


def run_step(command, env=None):
    """Runs train.py or test.py, echoed; a DataError if it fails (it has said why)."""
    print("+", " ".join(command), flush=True)
    try:
        subprocess.run(command, check=True, env=env)
    except subprocess.CalledProcessError as error:
        raise DataError(f"{' '.join(command[1:3])} ... failed (exit {error.returncode}); fix it and rerun: finished "
                        "seeds are kept") from None


def run_seed(run_dir, seed, flags, data_dir, eval_data_dir):
    """Trains (or carries on) one seed on data_dir, then tests it on each split of eval_data_dir not yet tested."""
    python = sys.executable
    if not os.path.exists(os.path.join(run_dir, "scene.weights.h5")):
        if os.path.exists(os.path.join(run_dir, "checkpoints", "latest.json")):
            command = [python, "train.py", "--resume", run_dir]
        else:  # new, or killed before its first checkpoint: nothing of it worth keeping
            command = [python, "train.py", "--data-dir", data_dir, "--run-dir", run_dir, "--seed", str(seed),
                       "--overwrite", *flags]
        run_step(command, env=huge_pages_env(os.environ))
    for folder, evaluation in EVALUATIONS.items():
        if in_data(eval_data_dir, evaluation) and not os.path.exists(os.path.join(run_dir, folder, "metrics.json")):
            choose = chooses_threshold(run_dir, evaluation)
            command = [python, "test.py", "--run-dir", run_dir, "--data-dir", eval_data_dir,
                       *evaluation_flags(evaluation),
                       *(["--choose-threshold"] if choose else []), "--num-pictures", "8"]
            run_step(command)


ROBUSTNESS_EVALUATIONS = ("test_shift", "test_crops", "test_backlit", "test_relit", "test_everyday")
# (header, the figure from one seed's {folder: metrics}), on the test objects: each robustness
# evaluation's box AP50 as a share of test's, and its recall and false alarms at the run's threshold
ROBUSTNESS = (("test box AP50", lambda m: m["test"]["box_ap50"]),) + tuple(
    (f"{name[5:]} {header}", lambda m, name=name, figure=figure: figure(m[name], m["test"]))
    for name in ROBUSTNESS_EVALUATIONS
    for header, figure in (("/ test", lambda m, test: m["box_ap50"] / test["box_ap50"]),
                           ("recall", lambda m, test: m["box_recall"]),
                           ("FP / absent", lambda m, test: m["absent_false_positives_per_query"])))


TRAINING = (("contrastive_loss", "train contrastive loss, last 100 steps"),)  # the embedding's loss


def final_losses(path, steps=100):
    """{loss: mean over the train rows of metrics.jsonl in the run's last `steps` steps}."""
    with open(path) as f:
        rows = [row for row in map(json.loads, f) if row.get("split") == "train"]
    last = [row for row in rows if row["step"] > rows[-1]["step"] - steps] if rows else []
    return {key: float(np.mean([row[key] for row in last])) for key, _ in TRAINING if last and key in last[-1]}


def stats(values):
    return (float(np.mean(values)), min(values), max(values), len(values)) if values else None


def summary(sweep_dir, recipe):
    """-> (flags, seeds, {split: {key: (mean, min, max, count)}, "robustness": {header: the same}})
    over the seeds tested on every split of SPLITS; a ratio is taken per seed, then averaged."""
    flags = read_json(os.path.join(sweep_dir, recipe, "recipe.json"))["flags"]
    rows = {}
    for name in sorted(os.listdir(os.path.join(sweep_dir, recipe))):
        paths = {folder: os.path.join(sweep_dir, recipe, name, folder, "metrics.json") for folder in EVALUATIONS}
        if name.startswith("seed") and all(os.path.exists(paths[split]) for split in SPLITS):
            rows[int(name[4:])] = {folder: read_json(p) for folder, p in paths.items() if os.path.exists(p)}
            rows[int(name[4:])]["train"] = final_losses(os.path.join(sweep_dir, recipe, name, "metrics.jsonl"))
    figures = {split: {key: stats([m[split][key] for m in rows.values() if m[split].get(key) is not None])
                       for key, _ in COLUMNS} for split in SPLITS}
    figures["train"] = {key: stats([m["train"][key] for m in rows.values() if key in m["train"]])
                        for key, _ in TRAINING}
    figures["robustness"] = {}
    for header, figure in ROBUSTNESS:
        values = []
        for metrics in rows.values():
            try:
                values.append(figure(metrics))
            except (KeyError, TypeError, ZeroDivisionError):  # not evaluated there, or no boxes
                pass
        figures["robustness"][header] = stats(values)
    return flags, sorted(rows), figures


def table(sweep_dir, recipes):
    """Markdown tables: one per split, then the robustness table; each figure as mean (min-max
    over the seeds), `-` where no seed has it."""
    lines = []
    tables = [(f"{split} split:", split, [h for _, h in COLUMNS], [k for k, _ in COLUMNS]) for split in SPLITS]
    tables.insert(1, ("training:", "train", [h for _, h in TRAINING], [k for k, _ in TRAINING]))
    headers = [h for h, _ in ROBUSTNESS]
    tables.append(("robustness (test objects; shift: other cameras; crops: references cut from scenes; backlit: "
                   "references lit from behind; relit: scenes under a low tinted light; everyday: everyday meshes "
                   "among them):",
                   "robustness", headers, headers))
    summaries = {recipe: summary(sweep_dir, recipe) for recipe in recipes}  # each run's files read once
    for title, part, headers, keys in tables:
        lines += [title, "", "| recipe | flags | seeds | " + " | ".join(headers) + " |",
                  "|---|---|---|" + "---|" * len(headers)]
        for recipe in recipes:
            flags, seeds, figures = summaries[recipe]
            cells = []
            for key in keys:
                figure = figures[part][key]
                if figure is None:
                    cells.append("-")
                else:
                    mean, lo, hi, count = figure
                    cells.append(f"{mean:.3f} ({lo:.3f}-{hi:.3f})" if count > 1 else f"{mean:.3f}")
            lines.append(f"| {recipe} | `{' '.join(flags) or '(defaults)'}` | {','.join(map(str, seeds)) or '-'} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep-dir", default="runs/sweep", help="where the recipes' runs go")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and test a recipe over seeds (train.py flags after --)")
    run.add_argument("recipe", help="a name for the recipe (a folder under --sweep-dir)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    run.add_argument("--data-dir", default="data/small", help="the data dir training reads")
    run.add_argument("--eval-data-dir", help="the data dir the evaluation suite reads (default: --data-dir); "
                     "recipes trained on other data (generate_data.py --appearance random, say) are compared on one")
    show = commands.add_parser("table", help="print the recipes' figures as markdown")
    show.add_argument("recipes", nargs="*", help="default: every recipe under --sweep-dir")
    args = parser.parse_args(argv)
    with exits_in_one_line("interrupted: the same command carries on (finished seeds are kept, a stopped one resumes)"):
        if args.command == "run":
            if not RECIPE_NAME.fullmatch(args.recipe):
                raise DataError(f"recipe {args.recipe!r}: give a plain name (letters, digits, - or _)")
            if os.path.exists(os.path.join(hyperparameters.CONFIGS_DIR, f"{args.recipe}.py")):
                flags = ["--config", args.recipe, *flags]  # a recipe of configs/: its overrides, then the flags
            ours = sorted(hyperparameters.given_flags(hyperparameters.make_parser(), flags) & SWEEPS_OWN)
            if ours:
                raise DataError(f"--{ours[0].replace('_', '-')} is sweep.py's to set (however spelt): give the other "
                                "train.py flags after --")
            # train.py's own checks of the flags, before anything is written
            hyperparameters.parse_args(["--data-dir", args.data_dir, "--run-dir",
                                        seed_dir(args.sweep_dir, args.recipe, 0), *flags])
            check_recipe(args.sweep_dir, args.recipe, flags)
            for seed in args.seeds:
                run_seed(seed_dir(args.sweep_dir, args.recipe, seed), seed, flags, args.data_dir,
                         args.eval_data_dir or args.data_dir)
        else:
            if not os.path.isdir(args.sweep_dir):
                raise DataError(f"--sweep-dir {args.sweep_dir} does not exist: run python sweep.py run first")
            recipes = args.recipes or sorted(n for n in os.listdir(args.sweep_dir)
                                             if os.path.exists(os.path.join(args.sweep_dir, n, "recipe.json")))
            missing = [r for r in recipes if not os.path.exists(os.path.join(args.sweep_dir, r, "recipe.json"))]
            if missing:
                raise DataError(f"{args.sweep_dir}/{missing[0]} holds no recipe: run python sweep.py run {missing[0]}")
            print(table(args.sweep_dir, recipes))


if __name__ == "__main__":
    main()
