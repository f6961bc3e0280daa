"""What the runs produced and what it means: outputs by URI, EvalRun records, arms of training seeds, the paired
bootstrap and its corrections, comparisons, compare's plot and the report page."""
