"""The collector: a small Bottle app that validates and appends annotators' submissions.

This package is also the project's stdlib-only base layer: `formats` (the contracts
between stages) and `clitools` (the console-script conventions) import nothing beyond
the standard library, so `build` and `analysis` can share them and the collector still
runs on a small server without torch, timm or pandas.
"""
