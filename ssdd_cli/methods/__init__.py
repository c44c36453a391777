"""Distillation methods: a registry of entries (KRR-ST, Boost, the random baseline) and the shared loop.

Importing this package is torch-free; see :mod:`ssdd_cli.methods.registry`.
"""
