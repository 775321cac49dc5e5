"""Test support shipped with hangar: contract suites for storage backends and a model of a repository.

Importable (not under ``tests/``) so that a new backend, in this repository or outside it, runs
the same contract by subclassing a mixin (see :mod:`hangar.testing.contracts`), and so that the
property-based tests and their model can be reused. Importing this package needs pytest
(``pip install hangar[test]``); hangar itself never imports it.
"""
