"""Studies: a grid of models x seeds on one dataset, one protocol, one report.

``fqvae study run SPEC --out DIR`` trains every (label, seed) of a TOML spec as an ordinary
``fqvae train`` run (:mod:`fqvae.study.runner`); ``fqvae study report DIR`` tabulates and
plots them (:mod:`fqvae.study.report`, :mod:`fqvae.study.figures`). The spec format is in
:mod:`fqvae.study.spec` and docs/study.md. Nothing is imported here, so that building the
``fqvae`` command line stays cheap.
"""
