"""Generators: model registry, diffusers pipelines and the template compositor."""
