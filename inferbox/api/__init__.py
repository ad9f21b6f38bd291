"""The HTTP API of the control plane, one module per resource group."""
