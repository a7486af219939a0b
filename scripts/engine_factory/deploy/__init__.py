"""Deployable artefacts made from validated plans: Triton model repositories (`triton`) and the load-time check a
serving host runs before Triton starts (`readiness`)."""
