"""Figures: one function per figure family, writing PDF + PNG."""
