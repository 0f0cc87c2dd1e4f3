"""The core: models, ports, stages, errors and the domain rules. Imports no adapter, service or operations module."""
