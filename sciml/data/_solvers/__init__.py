"""The PDE solvers of `sciml.data`, one module per equation, and the time stepper they share
(`etdrk4`). Their public names are re-exported from `sciml.data`."""
