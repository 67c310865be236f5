"""Put first on PYTHONPATH by ``tinyllm-instrument run``: its sitecustomize sets children up."""
