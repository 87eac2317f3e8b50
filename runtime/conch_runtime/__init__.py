"""The Conch model runtime: package, validate and pull Triton model repositories.

It never imports the operator package (`conch`): the serving pods' init container carries
only this package.
"""
