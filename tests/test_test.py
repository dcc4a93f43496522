import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import test as yolz_test


def test_end_to_end_writes_every_metric_and_picture(tiny_data, trained):
    metrics = yolz_test.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--num-pictures", "4",
                              "--batch-size", "3", "--absent-queries", "1", "--threshold", "0", "--min-score", "0"])
    out = trained / "test"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    for key in ("average_precision", "roc_auc", "positive_rate", "precision@0.25", "recall@0.5", "f1@0.75",
                "retrieval_recall@1", "per_object_average_precision", "scenes_per_s", "box_ap50", "box_ap50_95",
                "box_ap50_present_only", "absent_false_positives_per_query", "coco_ap", "coco_ap50", "coco_ap75",
                "box_recall_at_false_alarm_budget", "box_threshold_at_false_alarm_budget", "box_recall",
                "box_precision", "box_f1"):
        assert key in metrics
    truth, found = (json.loads((out / f"coco_{n}.json").read_text()) for n in ("ground_truth", "detections"))
    assert len(truth["images"]) == 2 and {c["id"] for c in truth["categories"]} == set(range(15, 20))
    assert len(found) == metrics["box_num_detections"] and len(truth["annotations"]) == metrics["box_num_true_boxes"]
    # every box counts at score 0: all of an absent query's are false positives
    assert metrics["absent_queries"] == 2 and metrics["absent_false_positives_per_query"] > 0
    assert metrics["box_num_detections"] > 0 and metrics["box_num_true_boxes"] > 0
    at_zero = metrics["box_operating_points"]["0.05"]
    assert 0 <= at_zero["precision"] <= 1 and 0 <= at_zero["recall"] <= 1
    assert metrics["box_threshold"] == 0 and metrics["box_recall"] >= at_zero["recall"]  # keeps more than 0.05
    assert metrics["num_scenes"] == 2 and metrics["num_pairs"] == 2 * 4 and metrics["num_views"] == 2
    assert set(metrics["per_object_average_precision"]) <= {str(i) for i in range(15, 20)}  # test ids only
    assert 0 <= metrics["positive_rate"] < 1 and 0 <= metrics["retrieval_recall@1"] <= 1

    pairs = sorted(os.listdir(out / "pairs"))
    kinds = {"anchors.png", "heatmap.png", "boxes.png", "y_true_pred.mask.png", "y_true_pred.alpha.png"}
    names = {name.rsplit(".", 3)[0] if "y_true" in name else name.rsplit(".", 2)[0] for name in pairs}
    assert len(names) == 4 + 1  # 4 present pairs and 1 absent query
    for name in names:  # each with all its pictures, linked from the page
        assert {p[len(name) + 1:] for p in pairs if p.startswith(name + ".")} == kinds
    page = (out / "index.html").read_text()
    assert all(f"pairs/{name}" in page for name in pairs if "mask" not in name)
    Image.open(out / "pr_curve.png").verify()
    neighbours = np.asarray(Image.open(out / "neighbours.png"))  # one row per test object (5), each 1 + 10 views
    assert 'src="neighbours.png"' in page and neighbours.shape[0] > 5 * 64 and neighbours.shape[1] > 11 * 64
    assert not [n for n in os.listdir(trained) if ".tmp-" in n]


def test_pair_pictures_show_the_scene_its_truth_and_the_views(tiny_data, trained):
    from data import EpisodeLoader, Split

    episode = EpisodeLoader(Split(tiny_data, "test"), 2, 3, seed=0, training=False).episode(0)
    scene = episode["scene"]
    probs = np.zeros(episode["masks"].shape[1:], np.float32)
    found = (np.array([[0, 0, 10, 10]]), np.array([0.9]))
    pictures = yolz_test.pair_pictures(episode, probs, 0, found, threshold=0.5)
    assert pictures["heatmap"].shape == pictures["boxes"].shape == scene.shape
    assert pictures["y_true_pred.alpha"].shape[0] == scene.shape[0] and pictures["y_true_pred.alpha"].shape[2] == 4
    assert pictures["anchors"].shape[0] == episode["anchors"].shape[2]  # the views side by side
    assert (pictures["boxes"][0, :10] == (255, 0, 0)).all()  # the detection drawn in red
    assert "boxes" not in yolz_test.pair_pictures(episode, probs, 0, None, threshold=0.5)


def test_pairs_are_sampled_from_worst_to_best():
    ap = np.array([[0.5, np.nan, 0.1], [0.9, 0.3, 0.7]])
    assert yolz_test.sample_pairs(ap, 3) == [(0, 2), (0, 0), (1, 0)]
    assert len(yolz_test.sample_pairs(ap, 10)) == 5  # every visible pair, none twice


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # keras, on the mismatched weights
def test_missing_or_incompatible_run_dir_is_a_clear_error(tiny_data, trained, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        yolz_test.main(["--run-dir", str(tmp_path / "nowhere"), "--data-dir", tiny_data])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained, unfinished)
    (unfinished / "scene.weights.h5").unlink()
    with pytest.raises(SystemExit, match=r"has no scene.weights.h5.*--resume"):
        yolz_test.main(["--run-dir", str(unfinished), "--data-dir", tiny_data])
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    config = json.loads((other / "model_config.json").read_text())
    (other / "model_config.json").write_text(json.dumps({**config, "embedding_dim": 16}))
    with pytest.raises(SystemExit, match="does not fit the run's model_config.json"):
        yolz_test.main(["--run-dir", str(other), "--data-dir", tiny_data])
    (other / "model_config.json").write_text(json.dumps({**config, "scene_size": 320}))
    with pytest.raises(SystemExit, match="has 128x128 scenes but the model config expects 320"):
        yolz_test.main(["--run-dir", str(other), "--data-dir", tiny_data])
    with pytest.raises(SystemExit, match="--num-views 7: .* has only 6 views per object"):
        yolz_test.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--num-views", "7"])


def test_more_views_than_half_the_split_and_random_backgrounds(tiny_data, trained, tmp_path):
    """The ablations' settings: N up to all V views (no retrieval figure then), views on random colours."""
    metrics = yolz_test.main(["--run-dir", str(trained), "--data-dir", tiny_data, "--num-views", "6",
                              "--background", "random", "--num-pictures", "1", "--absent-queries", "1",
                              "--threshold", "0.5", "--out-dir", str(tmp_path / "t")])
    assert metrics["num_views"] == 6 and metrics["background"] == "random"
    assert metrics["retrieval_recall@1"] is None and 0 <= metrics["average_precision"] <= 1


def test_out_dir_of_the_users_is_never_deleted(tiny_data, trained, tmp_path, monkeypatch):
    run_dir = shutil.copytree(trained, tmp_path / "run")
    mine = tmp_path / "mine"
    os.makedirs(mine)
    (mine / "thesis.tex").write_text("precious")
    args = ["--run-dir", str(run_dir), "--data-dir", tiny_data, "--num-pictures", "1", "--absent-queries", "1",
            "--threshold", "0.5"]
    for out_dir in (mine, run_dir, "."):  # a user's folder, the run dir itself, the current dir
        monkeypatch.chdir(tmp_path)
        with pytest.raises(SystemExit, match="holds files test.py did not write"):
            yolz_test.main([*args, "--out-dir", str(out_dir)])
    assert (mine / "thesis.tex").read_text() == "precious"
    assert (run_dir / "scene.weights.h5").exists() and (run_dir / "options.json").exists()
    with pytest.raises(SystemExit, match="does not exist: create it first"):
        yolz_test.main([*args, "--out-dir", str(tmp_path / "no" / "such")])
    # a dir test.py made is replaced, and so is the default RUN_DIR/SPLIT
    yolz_test.main([*args, "--out-dir", str(tmp_path / "t")])
    stale = tmp_path / "t" / "pairs" / "scene_0099.obj_099.heatmap.png"  # a pair the last run drew, this one not
    stale.write_text("from the last run")
    yolz_test.main([*args, "--out-dir", str(tmp_path / "t")])
    assert not stale.exists() and (tmp_path / "t" / "metrics.json").exists()
    (tmp_path / "t" / "notes.md").write_text("mine")  # a user's file in it: the dir is no longer test.py's alone
    with pytest.raises(SystemExit, match="holds files test.py did not write"):
        yolz_test.main([*args, "--out-dir", str(tmp_path / "t")])
    assert (tmp_path / "t" / "notes.md").read_text() == "mine"
    os.makedirs(run_dir / "test", exist_ok=True)
    yolz_test.main(args)
    assert (run_dir / "test" / "metrics.json").exists()


def test_a_kill_mid_swap_keeps_whole_results_and_the_next_run_cleans_up(tiny_data, trained, tmp_path):
    args = ["--run-dir", str(trained), "--data-dir", tiny_data, "--num-pictures", "1", "--absent-queries", "1",
            "--threshold", "0.5", "--out-dir", str(tmp_path / "t")]
    first = yolz_test.main(args)
    # killed between the two renames of the swap: the old results aside, the new ones not yet in
    os.rename(tmp_path / "t", tmp_path / ".t.old-999999999")
    os.makedirs(tmp_path / ".t.tmp-999999999" / "pairs")  # and a killed run's half-written dir
    from util import remove_stale_temps

    remove_stale_temps(str(tmp_path / "t"))
    assert json.loads((tmp_path / "t" / "metrics.json").read_text()) == first  # the old results are back
    assert sorted(os.listdir(tmp_path)) == ["t"]
    os.makedirs(tmp_path / ".t.tmp-999999999")
    yolz_test.main(args)
    assert sorted(os.listdir(tmp_path)) == ["t"]


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--num-views", "-1"), ("--threshold", "2"),
                                         ("--absent-queries", "-1"), ("--nms-iou", "nan")])
def test_bad_flags_are_one_line_errors(flag, value, capsys):
    with pytest.raises(SystemExit) as error:
        yolz_test.main([flag, value])
    assert error.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def points(run):
    return json.loads((run / "inference.json").read_text())["operating_points"]


def test_the_operating_threshold_is_chosen_on_validation_and_used_everywhere(tiny_data, trained, tmp_path, capsys):
    import detect
    from evaluate import budget_threshold
    from inference import FALSE_ALARM_BUDGET, PYRAMID_MIN_GAIN, Inference

    run = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test", "validation"))
    args = ["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "2", "--absent-queries", "1",
            "--min-score", "0"]
    with pytest.raises(SystemExit, match="no operating threshold for these settings yet: choose it on the validation "
                       r"split first: python test.py .* --split validation --choose-threshold"):
        yolz_test.main(args)
    with pytest.raises(SystemExit, match="--choose-threshold chooses on --split validation"):
        yolz_test.main([*args, "--choose-threshold"])
    assert not (run / "test").exists() and points(run) == []
    validation = yolz_test.main([*args, "--split", "validation", "--choose-threshold"])
    [chosen] = points(run)
    assert chosen["chosen_on"] == "validation" and validation["box_threshold"] == chosen["threshold"]
    assert (chosen["box_score"], chosen["presence_power"], chosen["flips"]) == ("geometric", 0.0, False)
    assert chosen["threshold"] == budget_threshold(validation["box_threshold_at_false_alarm_budget"])
    assert chosen["absent_false_positives_per_query"] <= FALSE_ALARM_BUDGET
    assert chosen["recall"] == validation["box_recall"] <= validation["box_recall_at_false_alarm_budget"]
    assert yolz_test.main(args)["box_threshold"] == chosen["threshold"]
    (run / "inference.json").write_text(json.dumps({"operating_points": [{**chosen, "threshold": 0.9}]}))
    assert yolz_test.main(args)["box_threshold"] == 0.9  # the stored one, not a constant
    pyramid = yolz_test.main([*args, "--split", "validation", "--pyramid-scales", "2"])
    assert pyramid["pyramid_scales"] == [2.0] and (run / "validation_pyramid2" / "metrics.json").exists()
    assert pyramid["box_threshold"] == 0.9  # a pyramid is not what the threshold was chosen for: it keeps it
    auto = yolz_test.main([*args, "--split", "validation", "--pyramid-auto"])  # the pyramid's scale by default
    assert auto["pyramid_scales"] == [2.0] and auto["pyramid_min_gain"] == PYRAMID_MIN_GAIN
    assert auto["box_threshold"] == 0.9 and (run / "validation_pyramid2_auto" / "metrics.json").exists()
    shifted = yolz_test.main([*args, "--split", "validation_shift"])  # nor the validation objects' other cameras
    assert shifted["box_threshold"] == 0.9
    assert set(shifted["per_object_average_precision"]) <= {str(i) for i in range(10, 15)}  # validation's ids
    assert detect.main(["--run-dir", str(run), "--scene", str(tmp_path / "scene.png"), "--refs",
                        *write_views(tiny_data, tmp_path)])["threshold"] == 0.9
    assert yolz_test.main([*args, "--threshold", "0.3"])["box_threshold"] == 0.3  # unless told
    assert [p["threshold"] for p in points(run)] == [0.9]
    # another way of scoring has its own threshold, chosen beside the other; the out dir says which
    with pytest.raises(SystemExit, match="--choose-threshold --box-score objectness --flips"):
        yolz_test.main([*args, "--flips", "--box-score", "objectness"])
    flipped = yolz_test.main([*args, "--split", "validation", "--choose-threshold", "--flips", "--box-score",
                              "objectness"])
    assert (run / "validation_objectness_flips" / "metrics.json").exists() and flipped["box_score"] == "objectness"
    plain, with_flips = points(run)
    assert plain["threshold"] == 0.9 and with_flips["flips"] and with_flips["box_score"] == "objectness"
    assert with_flips["threshold"] == flipped["box_threshold"]
    assert detect.main(["--run-dir", str(run), "--scene", str(tmp_path / "scene.png"), "--flips", "--box-score",
                        "objectness", "--refs", *write_views(tiny_data, tmp_path)])["threshold"] == \
        with_flips["threshold"]
    Inference.for_run(str(run)).store(str(run), {"threshold": 0.5})  # choosing again replaces its own alone
    assert [p["threshold"] for p in points(run)] == [with_flips["threshold"], 0.5]


def test_the_suite_chooses_the_threshold_first_and_tests_every_split(tiny_data, trained, tmp_path, capsys):
    run = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test", "validation"))
    done = yolz_test.main(["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "1", "--absent-queries",
                           "1", "--suite"])
    from runs import EVALUATIONS

    assert list(done) == list(EVALUATIONS)  # the tiny data has every split
    assert "validation (choosing the run's operating threshold)" in capsys.readouterr().out
    [point] = points(run)
    assert all(m["box_threshold"] == point["threshold"] for m in done.values())
    for name, evaluation in EVALUATIONS.items():
        assert json.loads((run / name / "metrics.json").read_text())["split"] == evaluation["split_name"]
    page = (run / "test" / "index.html").read_text()
    assert all(f"<td>{name}</td>" in page for name in EVALUATIONS)


def write_views(data_dir, tmp_path):
    """A test scene and two views of one of its objects as PNG files -> the views' paths."""
    from data import Split

    split = Split(data_dir, "test")
    Image.fromarray(split.scene(0)["rgb"]).save(tmp_path / "scene.png")
    paths = []
    for i, view in enumerate(split.views(split.scene(0)["obj_ids"][0])[:2]):
        Image.fromarray(view).save(tmp_path / f"view{i}.png")
        paths.append(str(tmp_path / f"view{i}.png"))
    return paths


def test_robustness_evaluations_and_their_table(tiny_data, trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "run")
    args = ["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "2", "--absent-queries", "1",
            "--threshold", "0.5"]
    shift = yolz_test.main([*args, "--split", "test_shift"])
    crops = yolz_test.main([*args, "--references", "crops"])
    everyday = yolz_test.main([*args, "--split", "test_everyday"])
    test = yolz_test.main(args)
    assert shift["split"] == "test_shift"
    assert set(shift["per_object_average_precision"]) <= {str(i) for i in range(15, 20)}
    assert crops["references"] == "crops" and (run / "test_crops" / "metrics.json").exists()
    assert crops["num_pairs"] == test["num_pairs"]  # the same queries, other references
    assert set(everyday["by_family"]) == {"blocks", "everyday"} and "by_family" not in test
    assert everyday["by_family"]["everyday"]["present_queries"] > 0
    page = (run / "test" / "index.html").read_text()
    assert "Robustness" in page and all(f"<td>{name}</td>" in page for name in ("test_shift", "test_crops", "test"))
    assert "<td>test_everyday: everyday only</td>" in page and "<td>test_everyday: blocks only</td>" in page


def scoring_answer(tiny_data, trained):
    """The trained run's answer to one test episode (3 objects present, 1 absent) as a function of
    the inference settings: answer(**settings) -> (P(object), [1][Q] of (boxes, scores)), the run."""
    from data import EpisodeLoader
    from evaluate import EPISODE_KEYS, load
    from inference import Inference

    run, split = load(str(trained), tiny_data, "test")
    episode = EpisodeLoader(split, 3, 2, seed=0, training=False, num_absent=1).episode(0)
    batch = {k: np.stack([episode[k]]) for k in EPISODE_KEYS}

    def answer(**settings):
        return Inference(**settings).answer(run)(batch)

    return answer, run


def test_geometric_box_scores_read_each_boxs_own_cell(tiny_data, trained):
    """With box_score "geometric" the evaluator's candidates are the same boxes, each scored by the
    geometric mean of its objectness and the P(object) of the cell it was decoded from."""
    answer, run = scoring_answer(tiny_data, trained)
    probs, plain = answer(box_score="objectness", presence_power=0.0)
    same_probs, mixed = answer(box_score="geometric", presence_power=0.0)
    np.testing.assert_array_equal(probs, same_probs)
    priors = len(run.config.priors)
    for q, ((boxes, objectness), (mixed_boxes, scores)) in enumerate(zip(plain[0], mixed[0])):
        np.testing.assert_array_equal(boxes, mixed_boxes)
        np.testing.assert_allclose(scores, np.sqrt(objectness * np.repeat(probs[0, q].reshape(-1), priors)), rtol=1e-6)


def test_presence_power_scales_each_querys_boxes_by_its_peak(tiny_data, trained):
    """presence_power p: every box of a query keeps its place and its box_score, times the query's
    peak P(object) to the p; so the boxes of a query the classifier doubts fall below those of
    one it is sure of, and the order within a query stays."""
    answer, _ = scoring_answer(tiny_data, trained)
    probs, plain = answer(box_score="geometric", presence_power=0.0)
    _, gated = answer(box_score="geometric", presence_power=3.0)
    for q, ((boxes, scores), (gated_boxes, gated_scores)) in enumerate(zip(plain[0], gated[0])):
        np.testing.assert_array_equal(boxes, gated_boxes)
        np.testing.assert_allclose(gated_scores, scores * probs[0, q].max() ** 3, rtol=1e-6)


def test_the_default_out_dir_is_replaced_only_while_it_holds_test_outputs_alone(tiny_data, trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "run")
    args = ["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "1", "--absent-queries", "1",
            "--threshold", "0.5"]
    yolz_test.main(args)
    (run / "test" / "notes.md").write_text("mine")
    with pytest.raises(SystemExit, match=r"test holds notes.md, which test.py did not write"):
        yolz_test.main(args)
    assert (run / "test" / "notes.md").read_text() == "mine"
    (run / "test" / "notes.md").unlink()
    for name in os.listdir(run / "test"):  # a run made before the marker: test.py's names alone
        if name != "metrics.json":
            shutil.rmtree(run / "test" / name) if (run / "test" / name).is_dir() else (run / "test" / name).unlink()
    yolz_test.main(args)
    assert (run / "test" / "index.html").exists()
    # a run dir that is also the data dir: its test split is data, never replaced
    for split in ("train", "validation", "test"):
        shutil.rmtree(run / split, ignore_errors=True)
        shutil.copytree(os.path.join(tiny_data, split), run / split)
    manifest = (run / "test" / "manifest.json").read_bytes()
    with pytest.raises(SystemExit, match=r"test holds .*, which test.py did not write"):
        yolz_test.main(["--run-dir", str(run), "--data-dir", str(run), "--threshold", "0.5"])
    assert (run / "test" / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("name, content, message", [
    ("inference.json", {"operating_points": [{"threshold": "0.5"}]}, "has no threshold from 0 to 1"),
    ("inference.json", {"operating_points": [{"threshold": 7}]}, "has no threshold from 0 to 1"),
    ("inference.json", [0.5], "is not a run's inference settings"),
    ("inference.json", {"operating_points": {"threshold": 0.5}}, "is not a run's inference settings"),
    ("inference.json", {"box_score": "best"}, "box_score='best': give one of objectness, geometric"),
    ("inference.json", {"presence_power": -1}, "presence_power=-1: give 0 or more"),
    ("operating_point.json", {"threshold": "0.5"}, "has no threshold from 0 to 1"),
    ("operating_point.json", [0.5], "is not an operating point"),
    ("operating_point.json", {"threshold": 0.5, "flips": "yes"}, "is not an operating point"),
    ("operating_point.json", {"threshold": 0.5, "flips": {"threshold": -1}}, "has no threshold from 0 to 1")])
def test_a_broken_inference_file_is_one_line_naming_the_file(tiny_data, trained, tmp_path, name, content, message):
    """inference.json, or an older run's operating_point.json (read when it has no inference.json)."""
    import detect

    run = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test", "validation"))
    if name != "inference.json":
        (run / "inference.json").unlink()
    (run / name).write_text(json.dumps(content))
    named = run / ("model_config.json" if "threshold from" in message and name != "inference.json" else name)
    views = write_views(tiny_data, tmp_path)
    for command in (lambda: yolz_test.main(["--run-dir", str(run), "--data-dir", tiny_data]),
                    lambda: yolz_test.main(["--run-dir", str(run), "--data-dir", tiny_data, "--split", "validation",
                                            "--choose-threshold"]),
                    lambda: detect.main(["--run-dir", str(run), "--scene", str(tmp_path / "scene.png"), "--flips",
                                         "--refs", *views])):
        with pytest.raises(SystemExit) as error:
            command()
        assert f"{named}" in error.value.code and message in error.value.code
    assert not (run / "test").exists() and not (run / "validation").exists()


def test_a_run_written_before_inference_json_still_loads_and_scores_as_it_did(tiny_data, trained, tmp_path):
    """Older runs kept box_score and presence_power in model_config.json and options.json, their
    thresholds in operating_point.json: they load, evaluate, detect and resume as before."""
    import detect
    import train
    from inference import Inference

    run = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test", "validation"))
    (run / "inference.json").unlink()
    for name in ("model_config.json", "options.json"):
        old = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps({**old, "box_score": "geometric", "presence_power": 2.0}))
    (run / "operating_point.json").write_text(json.dumps({"threshold": 0.3, "flips": {"threshold": 0.4}}))
    assert Inference.for_run(str(run)) == Inference(box_score="geometric", presence_power=2.0, threshold=0.3)
    assert Inference.for_run(str(run), flips=True).threshold == 0.4
    metrics = yolz_test.main(["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "1", "--absent-queries",
                              "1"])
    assert (metrics["box_threshold"], metrics["presence_power"]) == (0.3, 2.0)
    found = detect.main(["--run-dir", str(run), "--scene", str(tmp_path / "scene.png"), "--refs",
                         *write_views(tiny_data, tmp_path)])
    assert found["threshold"] == 0.3
    config = json.loads((run / "model_config.json").read_text())  # written before the field: objectness
    (run / "model_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "box_score"}))
    assert Inference.for_run(str(run)).box_score == "objectness"
    train.main(["--resume", str(run), "--steps", "6"])  # options.json's old keys are no training options now
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6


def test_detect_and_test_give_the_same_boxes_and_scores(tiny_data, trained, tmp_path):
    """One pipeline: Detector.find on a test scene, with the views test.py used as references, gives
    the detections test.py wrote for that scene (to the COCO file's rounding: 0.01 pixel, 1e-5), with
    the presence gate that scores them all."""
    import detect
    from data import EpisodeLoader, Split

    run = shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns("test", "validation"))
    yolz_test.main(["--run-dir", str(run), "--data-dir", tiny_data, "--num-pictures", "0", "--absent-queries", "0",
                    "--threshold", "0.0006", "--min-score", "0.0006", "--presence-power", "0.5"])
    found = json.loads((run / "test_power0.5" / "coco_detections.json").read_text())
    split = Split(tiny_data, "test")
    episode = EpisodeLoader(split, split.objects_per_scene, 2, seed=0, training=False, positives=False).episode(0)
    detector = detect.Detector(str(run), threshold=0.0006, presence_power=0.5)
    answer = detector.find(episode["scene"], {int(o): list(views) for o, views in zip(episode["obj_ids"],
                                                                                      episode["anchors"])})
    size = episode["scene"].shape[0]
    compared = 0
    for obj, result in answer.items():
        theirs = []  # as Detector gives them: corners clipped to the scene, boxes wholly off it dropped
        for d in found:
            if d["image_id"] == 1 and d["category_id"] == obj:
                x0, y0, w, h = d["bbox"]
                box = np.clip([x0, y0, x0 + w, y0 + h], 0, size)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    theirs.append([d["score"], *box])
        ours = [[round(float(s), 5), *b] for s, b in zip(result["scores"], result["boxes"].tolist())]
        assert len(ours) == len(theirs) > 0
        for score, *box in ours:  # each ours is one of theirs: Detector rounds corners to whole pixels
            match = [i for i, (their_score, *their_box) in enumerate(theirs) if abs(score - their_score) <= 2e-5
                     and np.max(np.abs(np.subtract(box, their_box))) <= 0.51]
            assert match, (score, box)
            theirs.pop(match[0])
        compared += len(ours)
    assert compared > 0
