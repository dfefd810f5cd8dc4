"""Pipeline assembly: options, runner configs, sources, sinks and the shopstream CLI."""
