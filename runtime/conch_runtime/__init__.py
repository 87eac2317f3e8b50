"""The Conch model runtime: package, validate and pull Triton model repositories.

It never imports the operator package (`conch`): the serving pods' init container carries
only this package. The public API, one module per job:

- `conch_runtime.pull.pull`: fetch, verify and install an artifact (the init container);
- `conch_runtime.package.package` -> `PackageResult`: load, compress, export and package a
  model (repository with config.pbtxt, artifact, conch.json, ModelVersion YAML);
- `conch_runtime.validate.validate` -> `ValidationReport`: serve a package on a real
  tritonserver (or check it with torch / onnxruntime) and compare with its reference;
- `conch_runtime.triton.TritonServer`: run the nvidia-pytriton wheel's tritonserver on
  loopback.

Nothing is re-exported here, so `import conch_runtime` (and `pull`) never imports torch.
"""
