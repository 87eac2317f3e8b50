"""Triton Python-backend model that serves a packaged torch model (copied as `1/model.py`).

This file runs inside Triton's Python backend stub, not in the conch runtime: it imports
only torch, numpy and the backend's `triton_python_backend_utils`, and reads everything it
needs from the model configuration Triton passes in:

- parameter `model_file`: `model.pt2` (an exported program) or `model.pt` (TorchScript), in
  the version directory beside this file;
- parameter `torch_threads`: intra-op threads per instance (default 1);
- inputs and outputs in the order the model takes and returns them.

All requests of one `execute` call (a dynamic batch) are concatenated on the batch
dimension, run once, and split back. A request that cannot be served gets an error response
of its own; the others are still answered.
"""

import json
import os
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if not value else str(value)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.inputs = [
            (i["name"], pb_utils.triton_string_to_numpy(i["data_type"])) for i in config["input"]
        ]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]
        torch.set_num_threads(int(_parameter(config, "torch_threads", "1")))
        self.device = torch.device("cpu")
        if args.get("model_instance_kind") == "GPU":
            self.device = torch.device("cuda", int(args["model_instance_device_id"]))
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, _parameter(config, "model_file", "model.pt2"))
        if path.endswith(".pt2"):
            self.model: torch.nn.Module | None = torch.export.load(path).module()
        else:
            self.model = torch.jit.load(path, map_location="cpu").eval()  # type: ignore[no-untyped-call]
        if self.device.type != "cpu":
            self.model = self.model.to(self.device)

    def execute(self, requests: list[Any]) -> list[Any]:
        batches: list[list[torch.Tensor]] = []
        sizes: list[int] = []
        errors: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                tensors = []
                for name, dtype in self.inputs:
                    array = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    tensors.append(torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)))
                batches.append(tensors)
                sizes.append(int(tensors[0].shape[0]))
            except Exception as exc:
                errors[index] = f"bad request: {type(exc).__name__}: {exc}"
        results: list[list[np.ndarray[Any, Any]]] = []
        if batches:
            try:
                results = self._run(batches, sizes)
            except Exception as exc:
                message = f"inference failed: {type(exc).__name__}: {exc}"
                errors.update({i: message for i in range(len(requests)) if i not in errors})
        responses: list[Any] = []
        served = iter(results)
        for index in range(len(requests)):
            if index in errors:
                error = pb_utils.TritonError(errors[index])
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(array.astype(dtype, copy=False)))
                for (name, dtype), array in zip(self.outputs, next(served), strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _run(
        self, batches: list[list[torch.Tensor]], sizes: list[int]
    ) -> list[list[np.ndarray[Any, Any]]]:
        assert self.model is not None
        columns = [torch.cat(column).to(self.device) for column in zip(*batches, strict=True)]
        with torch.inference_mode():
            result = self.model(*columns)
        outputs = [result] if isinstance(result, torch.Tensor) else list(result)
        if len(outputs) != len(self.outputs):
            raise RuntimeError(f"{len(outputs)} outputs, the config has {len(self.outputs)}")
        split = [torch.split(o.detach().cpu(), sizes) for o in outputs]
        return [[part[i].numpy() for part in split] for i in range(len(sizes))]

    def finalize(self) -> None:
        self.model = None
