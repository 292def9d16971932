"""The multi-model-server compatibility engine (``SERVE_ENGINE=mms``).

Two sides, two processes:

* the engine process (``serve.mms.engine.run``): checks the settings and the installation, renders
  MMS's configuration into a private directory (``serve.mms.config``), starts MMS and supervises
  its process tree until SIGTERM or until it dies (``serve.mms.supervisor``);
* MMS's Python workers: ``serve.mms.backend`` is what MMS runs as "python" (it preloads the model
  before MMS's worker code starts) and ``serve.mms.service`` is the handler MMS calls per request.

They talk only through the environment and files named in ``serve.mms.worker_env``. docs/engines.md
describes the engine and the multi-model-server defects it does not inherit.
"""
