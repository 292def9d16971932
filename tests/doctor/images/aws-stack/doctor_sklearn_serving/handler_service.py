"""The handler service multi-model-server loads: exactly one class at module level (MMS refuses a
module holding more), whose transformer gets scikit-learn defaults. As in AWS's scikit-learn container
there is no default model_fn: the user's code/inference.py loads the model."""

import numpy as np
from sagemaker_inference import content_types, decoder, default_inference_handler, encoder
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer


class HandlerService(DefaultHandlerService):
    """sagemaker-inference's handler service with scikit-learn's decode / predict / encode."""

    class Defaults(default_inference_handler.DefaultInferenceHandler):
        def default_model_fn(self, model_dir, context=None):
            raise NotImplementedError("no default model_fn: provide model_fn in code/inference.py")

        def default_input_fn(self, input_data, content_type, context=None):
            rows = decoder.decode(input_data, content_type)
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
            return rows.astype(np.float32) if content_type in content_types.UTF8_TYPES else rows

        def default_predict_fn(self, data, model, context=None):
            return model.predict(data)

        def default_output_fn(self, prediction, accept, context=None):
            return encoder.encode(prediction, accept), accept

    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=self.Defaults()))
