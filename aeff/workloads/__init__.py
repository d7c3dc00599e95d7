"""Workloads: one module and one conf/workload YAML each."""
