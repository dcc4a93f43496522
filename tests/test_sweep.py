import json
import os

import pytest

import sweep


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def metrics(ap50, fp=0.5, recall=0.6):
    return {"average_precision": 0.5, "box_ap50": ap50, "box_ap50_95": 0.1, "box_recall": recall,
            "absent_false_positives_per_query": fp, "retrieval_recall@1": 1.0}


def test_table_by_hand(tmp_path):
    write(tmp_path / "bce" / "recipe.json", {"flags": ["--focal-gamma", "0"]})
    for seed, (test, shift, crops) in enumerate([(0.4, 0.1, 0.2), (0.2, 0.1, 0.2)]):
        run = tmp_path / "bce" / f"seed{seed}"
        write(run / "validation" / "metrics.json", metrics(0.3))
        write(run / "test" / "metrics.json", metrics(test))
        write(run / "test_shift" / "metrics.json", metrics(shift))
        write(run / "test_crops" / "metrics.json", metrics(crops, fp=seed, recall=0.1 * seed))
        with open(run / "metrics.jsonl", "w") as f:  # train rows every 50 steps; the last 100 steps: 200, 250
            for step, loss in ((150, 9.0), (200, 2.0 + seed), (250, 3.0 + seed)):
                f.write(json.dumps({"split": "train", "step": step, "contrastive_loss": loss}) + "\n")
            f.write(json.dumps({"split": "validation", "step": 250, "average_precision": 0.1}) + "\n")
    write(tmp_path / "bce" / "seed2" / "validation" / "metrics.json", metrics(0.9))  # not tested yet: left out
    flags, seeds, figures = sweep.summary(str(tmp_path), "bce")
    assert flags == ["--focal-gamma", "0"] and seeds == [0, 1]
    assert figures["test"]["box_ap50"] == pytest.approx((0.3, 0.2, 0.4, 2))
    assert figures["train"]["contrastive_loss"] == pytest.approx((3.0, 2.5, 3.5, 2))
    # ratios per seed (0.25 and 0.5), then their mean, not the ratio of the means (1/3)
    assert figures["robustness"]["shift / test"] == pytest.approx((0.375, 0.25, 0.5, 2))
    assert figures["robustness"]["crops / test"] == pytest.approx((0.75, 0.5, 1.0, 2))
    assert figures["robustness"]["crops FP / absent"] == pytest.approx((0.5, 0, 1, 2))
    assert figures["robustness"]["crops recall"] == pytest.approx((0.05, 0, 0.1, 2))
    assert figures["robustness"]["backlit / test"] is None  # no seed evaluated there
    text = sweep.table(str(tmp_path), ["bce"])
    assert "| bce | `--focal-gamma 0` | 0,1 | 0.300 (0.200-0.400) |" in text
    assert "| 0.375 (0.250-0.500) |" in text


def test_a_seed_without_robustness_evaluations_gets_dashes(tmp_path):
    write(tmp_path / "old" / "recipe.json", {"flags": []})
    write(tmp_path / "old" / "seed0" / "validation" / "metrics.json", metrics(0.3))
    write(tmp_path / "old" / "seed0" / "test" / "metrics.json", metrics(0.2))
    (tmp_path / "old" / "seed0" / "metrics.jsonl").write_text("")
    robustness = sweep.table(str(tmp_path), ["old"]).split("robustness")[1]
    assert "| old | `(defaults)` | 0 | 0.200 |" + " - |" * 15 in robustness


def test_flags_that_sweep_sets_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--seed is sweep.py's to set"):
        sweep.main(["--sweep-dir", str(tmp_path), "run", "x", "--", "--seed", "3"])
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.parametrize("flags", [["--run-dir=elsewhere"], ["--run", "elsewhere"], ["--seed=7"], ["--see", "7"],
                                   ["--data=other"], ["--overwrite"], ["--res", "x"]])
def test_flags_that_sweep_sets_are_refused_however_spelt(tmp_path, flags):
    with pytest.raises(SystemExit, match="is sweep.py's to set"):
        sweep.main(["--sweep-dir", str(tmp_path), "run", "x", "--", *flags])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("recipe", ["", ".", "..", "a/b", "x y"])
def test_a_recipe_is_a_plain_name(tmp_path, recipe):
    with pytest.raises(SystemExit, match="give a plain name"):
        sweep.main(["--sweep-dir", str(tmp_path), "run", recipe])
    assert not os.listdir(tmp_path)


def test_the_suite_reads_the_eval_data_dir_where_one_is_given(tmp_path, monkeypatch):
    run = tmp_path / "run"
    write(run / "validation" / "metrics.json", metrics(0.3))  # tested there already
    (run / "scene.weights.h5").write_text("")  # trained
    for split in ("validation", "test", "test_backlit"):  # the evaluation data has scenes of these only
        write(tmp_path / "eval" / split / "manifest.json", {"num_scenes": 2})
    write(tmp_path / "eval" / "test_relit" / "manifest.json", {"num_scenes": 0})
    commands = []
    monkeypatch.setattr(sweep, "run_step", lambda command, env=None: commands.append(command))
    sweep.run_seed(str(run), 0, [], str(tmp_path / "train_data"), str(tmp_path / "eval"))
    assert [c[c.index("--split") + 1] for c in commands] == ["test", "test_backlit", "test"]  # crops, backlit, test
    assert all(c[c.index("--data-dir") + 1] == str(tmp_path / "eval") for c in commands)
