"""photometric: the demo recipe with photometric augmentation of every training scene and view
(data.PHOTOMETRIC), on the data as rendered.

    python sweep.py run photometric --seeds 0 1

Cost: ~13 min per seed on a 2-core AMD EPYC, and ~5 min for the suite.
Result: experiments/log.md, "Part 4".
"""

OVERRIDES = {"photometric": True}
