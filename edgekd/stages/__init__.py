"""Pipeline stages. Each is a module with a typed config and one entry function that takes
artifacts in and returns artifacts out: distill, quantize, export, verify, bench, report."""
