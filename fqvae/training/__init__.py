"""Training: the run configuration (:mod:`config`), its resolution from the published settings
(:mod:`presets`), the loop (:mod:`trainer`), checkpoints, DDP, logs, figures and the demo.
Only :mod:`fqvae.cli` and :mod:`fqvae.study` import this package."""
