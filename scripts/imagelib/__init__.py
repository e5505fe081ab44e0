"""Helpers of scripts/build-image: what it needs to assemble an image, and nothing that knows
a service or a package by name (the services' image.yml files and scripts/recipes/ hold that)."""
