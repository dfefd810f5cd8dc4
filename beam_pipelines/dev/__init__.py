"""Local parts for trying and testing: emulators, a Flink cluster, sample data, the demo."""
