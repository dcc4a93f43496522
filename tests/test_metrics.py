import numpy as np
import pytest

from metrics import (average_precision, box_metrics, pixel_metrics, precision_recall_curve, precision_recall_f1,
                     recall_at_1, roc_auc)

SCORES = np.array([0.9, 0.8, 0.7, 0.6])
LABELS = np.array([1, 0, 1, 0])


def test_average_precision_by_hand():
    assert average_precision(SCORES, LABELS) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(LABELS * 0.9, LABELS) == 1.0  # perfect
    labels = np.zeros((10, 10))
    labels[2, :3] = 1
    assert average_precision(np.full((10, 10), 0.3), labels) == pytest.approx(0.03)  # constant: the positive rate


def test_roc_auc_by_hand():
    assert roc_auc(SCORES, LABELS) == pytest.approx(3 / 4)
    assert roc_auc(LABELS.astype(float), LABELS) == 1.0
    assert roc_auc(np.full(4, 0.5), LABELS) == 0.5


def test_precision_recall_f1_by_hand():
    assert precision_recall_f1(SCORES, LABELS, 0.5) == pytest.approx((0.5, 1.0, 2 / 3))
    assert precision_recall_f1(SCORES, LABELS, 0.75) == pytest.approx((0.5, 0.5, 0.5))
    assert precision_recall_f1(SCORES, LABELS, 0.95) == (0.0, 0.0, 0.0)


def test_pixel_metrics_has_every_field():
    figures = pixel_metrics(SCORES, LABELS)
    assert figures["positive_rate"] == 0.5
    assert {"average_precision", "roc_auc", "precision@0.25", "recall@0.5", "f1@0.75"} <= set(figures)


def test_precision_recall_curve_by_hand():
    precision, recall = precision_recall_curve(SCORES, LABELS)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 2, 1 / 2, 1, 1])
    precision, recall = precision_recall_curve(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1]))  # a tie: one point
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 2, 1])


def test_recall_at_1_by_hand():
    keys = np.eye(3)
    assert recall_at_1(keys, keys) == 1.0
    assert recall_at_1(keys[[1, 0, 2]], keys) == pytest.approx(1 / 3)


def test_coco_and_yolz_box_ap_by_hand():
    """Object 5: two true boxes in image 1; detections there: a hit (0.9), a miss (0.8), a hit
    (0.7); image 2 does not hold it, and an absent query's detection (0.85) lands there. Ranked:
    hit, false, false, hit: precision 1 up to recall 0.5, then 2/4. yolz (all-point): 0.5 x 1 +
    0.5 x 0.5 = 0.75; COCO (101 recall points 0, 0.01, ..., 1): (51 x 1 + 50 x 0.5) / 101."""
    from evaluate import coco_figures

    true = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    found = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]]), np.array([0.9, 0.8, 0.7])
    absent = np.array([[0, 0, 10, 10]]), np.array([0.85])
    yolz = box_metrics([(*found, true), (*absent, np.zeros((0, 4)))])
    assert yolz["ap50"] == pytest.approx(0.75) and yolz["ap50_95"] == pytest.approx(0.75)  # exact boxes: every IoU

    def xywh(box):
        return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]

    truth = {"images": [{"id": 1, "width": 64, "height": 64}, {"id": 2, "width": 64, "height": 64}],
             "categories": [{"id": 5, "name": "5"}],
             "annotations": [{"id": i + 1, "image_id": 1, "category_id": 5, "bbox": xywh(b), "area": 100, "iscrowd": 0}
                             for i, b in enumerate(true)]}
    results = [{"image_id": image, "category_id": 5, "bbox": xywh(b), "score": s}
               for image, (boxes, scores) in ((1, found), (2, absent)) for b, s in zip(boxes, scores)]
    coco = coco_figures(truth, results)
    assert coco["coco_ap50"] == pytest.approx(76 / 101) and coco["coco_ap"] == pytest.approx(76 / 101)
    assert coco["coco_ap75"] == pytest.approx(76 / 101)
    assert coco_figures(truth, [])["coco_ap50"] == 0.0


def test_recall_within_the_false_alarm_budget_by_hand():
    """Two present queries with 4 true boxes: hits at 0.9, 0.6 and 0.3, a miss at 0.8. Ten absent
    queries' detections score 0.7, 0.5, 0.4: a budget of 0.2 per query allows 2 of them, so the
    threshold sits at the third (0.4) and only detections above it count: 2 hits of 4 boxes; a
    budget of 0 keeps only those above 0.7: 1 hit."""
    from evaluate import budget_threshold, operating_points, recall_at_false_alarms

    true = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    present = [(np.array([[0, 0, 10, 10], [40, 40, 50, 50]]), np.array([0.9, 0.8]), true),
               (np.array([[20, 20, 30, 30], [0, 0, 10, 10]]), np.array([0.6, 0.3]), true)]
    nothing = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)))
    absent = [(np.array([[0, 0, 5, 5]] * 3), np.array([0.7, 0.5, 0.4]), np.zeros((0, 4)))] + [nothing] * 9
    assert recall_at_false_alarms(present, absent, 0.2) == (pytest.approx(0.5), pytest.approx(0.4))
    assert recall_at_false_alarms(present, absent, 0.1) == (pytest.approx(0.5), pytest.approx(0.5))
    assert recall_at_false_alarms(present, absent, 0.0) == (pytest.approx(0.25), pytest.approx(0.7))
    assert recall_at_false_alarms(present, absent, 0.3) == (pytest.approx(0.75), 0.0)  # every detection fits
    # the operating threshold a run keeps (scores at or above it) lies just above the budget's
    assert budget_threshold(0.4) == 0.401 and budget_threshold(0.0) == 0.001 and budget_threshold(0.4567) == 0.457
    at = operating_points(present, absent, (0.401,))["0.401"]
    assert at["recall"] == pytest.approx(0.5) and at["precision"] == pytest.approx(2 / 5)  # 2 hits among 5 kept
    assert at["absent_false_positives_per_query"] == pytest.approx(0.2)


def test_family_figures_by_hand():
    """One scene, queries of a block (5) and an everyday mesh (1000) present, one of each absent.
    The block is found (a hit at 0.9), the mesh missed (0.8, elsewhere); the absent mesh raises
    a false alarm at 0.6, the absent block none. At threshold 0.5: blocks recall 1 with no false
    alarm, the mesh recall 0 with one."""
    from evaluate import Predictions, family_figures

    def query(boxes, scores):
        return np.array(boxes, float).reshape(-1, 4), np.array(scores, float)

    truth = np.full((1, 4, 1, 4), -1, np.int16)
    truth[0, 0, 0] = truth[0, 1, 0] = (0, 0, 10, 10)
    pred = Predictions(probs=None, masks=None, obj_ids=np.array([[5, 1000, 7, 1001]]), boxes=truth,
                       detections=[[query([0, 0, 10, 10], [0.9]), query([50, 50, 60, 60], [0.8]), query([], []),
                                    query([20, 20, 30, 30], [0.6])]], num_present=2, scene_index=np.array([0]),
                       loader=None, scenes_per_s=0.0, compile_s=0.0)
    figures = family_figures(pred, 0.5)
    assert figures["blocks"] == {"box_ap50": pytest.approx(1.0), "box_recall": 1.0,
                                 "absent_false_positives_per_query": 0.0, "present_queries": 1, "absent_queries": 1}
    assert figures["everyday"]["box_ap50"] == 0 and figures["everyday"]["box_recall"] == 0
    assert figures["everyday"]["absent_false_positives_per_query"] == 1.0
    single = Predictions(**{**vars(pred), "obj_ids": np.array([[5, 6, 7, 8]])})
    assert family_figures(single, 0.5) == {}  # one family: nothing to set apart
