"""Tests of the cloud components against a real kube-apiserver (see support.k8s).

A package so that mypy and pytest name this folder's conftest `cloud.conftest`, not a second
top-level `conftest` next to tests/conftest.py.
"""
