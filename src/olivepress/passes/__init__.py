"""Passes: one module each; see passes/base.py for the contract and registry.py for names."""
