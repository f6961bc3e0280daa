"""Trace sources: one loader module per TraceDataset source kind."""
