"""Analysis scripts behind the choices recorded in experiments/log.md; run each from the repo
root as a module: python -m experiments.NAME --help."""
