"""Frontends (source model -> IR) and, later, backends (IR -> C / HDL)."""
