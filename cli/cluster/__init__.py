"""Talking to the Kubernetes API: kubeconfig, requests, pods."""
