"""`make bench`: every `benchmarks/bench_*.py` module's `main()` prints one JSON object per line
(`name`, `value`, `unit`, and where a baseline exists `baseline`, `ratio`)."""
