"""Training algorithms: one module and one conf/submission YAML each."""
