"""Web framework integrations: Starlette/FastAPI (:mod:`kirocache.contrib.starlette`) and Django.

Each module imports its framework, so import the one you use; ``import kirocache`` never
imports a framework. They use kirocache's public API only.
"""
