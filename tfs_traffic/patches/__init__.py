"""The C++ patch series: which series a TF Serving release gets, applying and checking it.

Public: `series` (lookup, `check`, `apply`). The series themselves are the repository's top-level
patches/, shipped as package data through the `releases` symlink. Imports only the shared leaf
`errors`. The g++ harness that compiles and runs the series' metrics unit is test code:
tests/patches/metrics_unit.py.
"""
