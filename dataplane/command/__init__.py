"""The control-plane vocabulary shared by the CLI, main, the workers and the operator.

Imports nothing else from `dataplane`.
"""
