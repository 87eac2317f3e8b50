"""Sum of the input row; fails CONCH_FAILURE_RATE of requests, sleeps CONCH_DELAY_MS."""

import os
import random
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.failure_rate = float(os.environ.get("CONCH_FAILURE_RATE", "0"))
        self.delay = float(os.environ.get("CONCH_DELAY_MS", "0")) / 1000

    def execute(self, requests):
        # Raising fails the whole execute() call, which Triton counts in
        # nv_inference_request_failure (an error response would count as a success).
        # Without dynamic batching each call carries one request.
        if self.delay:
            time.sleep(self.delay)
        if random.random() < self.failure_rate:
            raise pb_utils.TritonModelException("injected failure")
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            y = x.sum(axis=1, keepdims=True).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", y)]))
        return responses
