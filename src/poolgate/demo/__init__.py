"""`poolgate demo`: a simulated vLLM fleet and the gateway in front of it, in one process."""
