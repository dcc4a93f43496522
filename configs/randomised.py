"""randomised: the demo recipe with photometric augmentation, for data rendered with domain
randomisation and procedural objects; evaluated on data with the fixed appearance, whose
robustness splits lie outside its training ranges.

    python generate_data.py --out-dir data/small_random --appearance random --train-ids 0-799,10000-10999
    python sweep.py run randomised --seeds 0 1 --data-dir data/small_random --eval-data-dir data/small

Cost: ~5 min rendering, then per seed ~16 min training and ~6 min for the suite on a 2-core AMD EPYC.
Result: experiments/log.md, "Domain randomisation".
"""

OVERRIDES = {"photometric": True}
