"""The C++ patch series: which series a TF Serving release gets, applying and checking it, the g++ unit harness.

Public: `series` (lookup, `check`, `apply`) and `unit` (builds and runs the patch's metrics unit).
The series themselves are the repository's top-level patches/, shipped as package data through the
`releases` symlink. Imports only the shared leaves (errors, exposition).
"""
