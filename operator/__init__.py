"""pysozu's Kubernetes ingress controller, imported as `ingress_operator`."""
