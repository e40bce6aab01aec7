"""Counters, metrics, request ends and access logs (formats, protobuf, the worker's writer)."""
