"""pretrained: the shipped model (pretrained/): the demo's recipe for 18000 steps on 3000
training scenes, its boxes gated by their query's peak P(object) (presence_power 4).

    OUT_DIR=data/small_3000 NUM_TRAIN_SCENES=3000 sh generate_split_chunk_data.sh    # ~35 min, 2 cores
    python train.py --config pretrained --data-dir data/small_3000 --run-dir runs/pretrained
    sh v3_test.sh runs/pretrained

Cost: 93 min on a 2-core AMD EPYC (3.25 steps/s, 9 validations).
Result (pretrained/test/metrics.json, sh v3_test.sh): per-cell AP 0.696, box AP50 COCO 0.777
(yolz's pooled 0.737), recall 0.661 at the threshold chosen on validation (0.459) with 0.23
false alarms per absent query.
"""

OVERRIDES = {
    "steps": 18000,
    "checkpoint_every": 2000,
    "eval_every": 2000,
}

INFERENCE = {
    "presence_power": 4.0,
}
